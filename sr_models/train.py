"""Training command: ``python -m sr_models.train <family> --scale S --data DIR --out DIR [...]``.

Only the entry point: the recipes, the Trainer, the zoo and the parser live in ``sr_models.training``.
Re-running the same command resumes from ``OUT/checkpoint`` (``--restart`` starts over);
``--max-minutes`` is the total budget over all resumed runs. See ``--help`` of each family.
"""

import sys

from sr_models.training.cli import main
from sr_models.training.common import spread_condition_weights  # noqa: F401  (quoted in the ldm-x2 card)

if __name__ == "__main__":
    sys.exit(main())
