"""``python -m sft_distill.simulator --port 8000``: serve on loopback until Ctrl-C."""

import sys

from .server import main

sys.exit(main())
