"""Frozen-build entry point of the windowed executable (Windows, macOS): the window only."""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()
    from tlstudio.gui.app import main

    sys.exit(main())
