"""The incident database (DuckDB): schema, migrations and connections."""

from oncall.store.db import IncidentDB, StoreError, default_db_path, open_db

__all__ = ["IncidentDB", "StoreError", "default_db_path", "open_db"]
