"""``sft-distill`` and ``python -m sft_distill``: the command, with Ctrl-C handled from the start.

Importing the command takes about a second (aiohttp, pydantic, numpy); a Ctrl-C meanwhile ends it
with the one-line interrupted message and status 130, not a traceback. This module imports only
what that takes.
"""

from __future__ import annotations

import sys

from .errors import EXIT_INTERRUPTED, interrupted_message


def main() -> int:
    """Run ``sft_distill.cli.main``; a Ctrl-C before it handles signals itself is one line."""
    try:
        from .cli import main as cli_main

        return cli_main()
    except KeyboardInterrupt:
        print(interrupted_message("SIGINT"), file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
