"""``python -m genflow`` (used by torchrun: ``torchrun -m genflow train ...``)."""

import sys

from genflow.cli import main

sys.exit(main())
