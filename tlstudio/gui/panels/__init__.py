"""Docks, banners and dialogs of the main window; each owns its own behaviour."""
