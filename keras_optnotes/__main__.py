"""`python -m keras_optnotes` runs the command-line interface."""

import sys

from keras_optnotes.cli import main

if __name__ == "__main__":
    sys.exit(main())
