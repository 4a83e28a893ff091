"""``python -m tlstudio``: same as the ``tlstudio`` command."""

import sys

from .cli import main

sys.exit(main())
