"""`python -m bevan.cli`: the `bevan` command."""

import sys

from bevan.cli import main

sys.exit(main())
