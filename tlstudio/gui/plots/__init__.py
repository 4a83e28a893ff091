"""Plots shared by the panels (pyqtgraph is imported when the first plot is made)."""
