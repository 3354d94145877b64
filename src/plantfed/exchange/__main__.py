import sys

from plantfed.exchange.cli import main

sys.exit(main())
