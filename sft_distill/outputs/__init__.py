"""What a run writes: ``formats`` (ShareGPT, Alpaca, OpenAI rows), ``writers`` (JSONL, atomic
JSON, the output directory and its lock), ``datasets`` (the splits in every format), ``manifest``,
``report`` (its numbers) and ``report_html``. The names the old ``outputs`` module had are served
from here.
"""

from .._legacy import package_getattr

__getattr__ = package_getattr(__name__)
