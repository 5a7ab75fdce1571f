"""``python -m cellnb`` (and ``torchrun -m cellnb train ...``) runs the command line."""

import sys

from .cli import main

sys.exit(main())
