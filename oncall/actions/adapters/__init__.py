"""Action adapters, one module per control plane (see oncall/actions/registry.py for the names)."""
