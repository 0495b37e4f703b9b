"""`python -m keras_ppo.cli ...`: how `keras-ppo train --workers N` starts its
workers (see `keras_ppo.cli.launch`), and a way to run the command line without
the console script."""

import sys

from keras_ppo.cli import main

if __name__ == "__main__":
    sys.exit(main())
