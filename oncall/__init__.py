"""oncall: a terminal incident console for teams that run LLM features in production.

The package root imports nothing heavy, so `oncall --help` starts fast and never loads Textual.
"""

__version__ = "0.1.0"
