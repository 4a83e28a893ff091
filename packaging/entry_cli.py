"""Frozen-build entry point: ``tlstudio`` (the window, or a command with arguments)."""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()  # worker processes re-enter here on Windows and macOS
    from tlstudio.cli import main

    sys.exit(main())
