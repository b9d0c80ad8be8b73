#!/usr/bin/env python
"""Run the distillation pipeline: same flags as ``sft-distill`` (see --help)."""

from __future__ import annotations

import sys
from pathlib import Path

# Let the script run from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# The light entry point: a Ctrl-C during the heavy imports is one line, not a traceback.
from sft_distill.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
