"""`python -m agent` is `onwatch`."""

import sys

from agent.cli import main

sys.exit(main())
