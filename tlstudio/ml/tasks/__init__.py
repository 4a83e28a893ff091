"""Task models sharing one backbone contract (see :mod:`tlstudio.ml.tasks.base`)."""
