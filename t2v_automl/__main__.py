"""``python -m t2v_automl``: the ``t2v-automl`` command."""

import sys

from t2v_automl.cli import main

if __name__ == "__main__":
    sys.exit(main())
