"""Background work for the window: imports, thumbnails, one-off calls.

Only plain data (and QImage, which is safe off the GUI thread) crosses threads;
each worker that touches the project opens its own SQLite connection."""
