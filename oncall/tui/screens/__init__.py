"""One module per screen; the app opens them by name (app.open_*)."""
