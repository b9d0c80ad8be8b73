"""The OpenAI-compatible test server: ``python -m sft_distill.simulator``, ``--dry-run``, tests.

``server`` serves the requests; what it answers is in ``content`` (a pure function of the
prompt), ``tasks`` (the modes' task prompts) and ``text2sql``; which requests fail, and how,
in ``faults``; which ``response_format`` forms it takes, and the reply's shape under a schema,
in ``response_formats``; cached prompt tokens in ``prefix_cache``; ``cli`` is
``python -m sft_distill.simulator``. The names the old ``simulator``
module had (``Simulator``, ``SimulatorConfig``, ``run_in_thread``, ``ok``...) are served here.
"""

from .._legacy import package_getattr

__getattr__ = package_getattr(__name__)
