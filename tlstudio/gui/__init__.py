"""The PySide6 window: main window, canvas, panels, workers and plots."""
