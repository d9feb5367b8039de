"""``python -m camvid_utils``: see ``camvid_utils.cli``."""

import sys

from .cli import main

sys.exit(main())
