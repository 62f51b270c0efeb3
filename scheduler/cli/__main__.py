"""``python -m scheduler.cli``: the same as the ``trainq`` command."""

import sys

from . import main

sys.exit(main())
