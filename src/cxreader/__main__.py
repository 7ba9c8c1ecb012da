"""``python -m cxreader`` runs the command-line interface (needed for ``torchrun -m cxreader``)."""

import sys

from cxreader.cli.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
