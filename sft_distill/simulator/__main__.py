"""``python -m sft_distill.simulator --port 8000``: serve on loopback until Ctrl-C."""

import sys

from .cli import main

sys.exit(main())
