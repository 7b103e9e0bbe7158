"""``python -m t2v_automl.cli``: the ``t2v-automl`` command (as ``python -m t2v_automl``)."""

import sys

from t2v_automl.cli import main

if __name__ == "__main__":
    sys.exit(main())
