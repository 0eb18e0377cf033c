"""Command line: `scoresde {train,sample,evaluate,demo}` (also `python -m scoresde`)."""

import sys

from ._cli import main


if __name__ == "__main__":
    sys.exit(main())
