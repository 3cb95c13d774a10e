"""Live traffic: the OTLP/HTTP receiver, watch and notifications, recovery from live data."""
