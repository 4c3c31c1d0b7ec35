"""``python -m pipeline.synth``: the command of :mod:`pipeline.synth.cli`."""
import sys

from pipeline.synth.cli import main

if __name__ == "__main__":
    sys.exit(main())
