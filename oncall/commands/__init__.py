"""CLI command groups, one module per area; registered in oncall/cli.py."""
