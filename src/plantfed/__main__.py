"""`python -m plantfed` is the `plantfed` command."""

import sys

from plantfed.cli import main

sys.exit(main())
