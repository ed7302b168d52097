"""``python -m gansample``: the same as the ``gansample`` command."""

import sys

from .cli import main

sys.exit(main())
