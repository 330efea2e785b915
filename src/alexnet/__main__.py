"""``python -m alexnet`` (and ``torchrun -m alexnet train ...``) runs the command line."""

import sys

from alexnet.cli import main

sys.exit(main())
