"""Background work for the window: :class:`~tlstudio.gui.workers.jobs.BackgroundJob`
(the one way to run work off the GUI thread), imports, predictions, thumbnails.

Only plain data (and QImage, which is safe off the GUI thread) crosses threads;
each job that touches the project opens its own SQLite connection."""
