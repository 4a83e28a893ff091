"""Frozen-build entry point: ``tlstudio`` (the window, or a command with arguments)."""

import logging
import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()  # worker processes re-enter here on Windows and macOS
    # The build leaves out triton (torch's compiler, 900 MB; tlstudio trains eagerly), and
    # torch's FLOP counter, which the ONNX exporter imports, warns about it on every export.
    logging.getLogger("torch.utils.flop_counter").setLevel(logging.ERROR)
    from tlstudio.cli import main

    sys.exit(main())
