"""``python -m headless_resolver``: the same as the ``headless-resolver`` command."""

import sys

from headless_resolver.cli import main

sys.exit(main())
