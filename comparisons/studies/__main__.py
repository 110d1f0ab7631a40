import sys

from comparisons.studies.cli import main

sys.exit(main())
