"""`python -m amiagent.cli`: the `amiagent` command."""

import sys

from amiagent.cli import main

sys.exit(main())
