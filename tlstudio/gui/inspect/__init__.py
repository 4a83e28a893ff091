"""Inspect mode: what a trained run learned (metrics, latent space, explanations, export).

Every view follows ``AppState.run_id`` (chosen in the mode's run picker), emits
``message(str)`` for the status bar and ``open_image(int)`` to show an image in the
Label canvas, and has ``shutdown()`` to stop its background work.
"""
