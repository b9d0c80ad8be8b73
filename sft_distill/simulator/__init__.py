"""The OpenAI-compatible test server: ``python -m sft_distill.simulator``, ``--dry-run``, tests.

``server`` serves the requests; what it answers is in ``content`` (a pure function of the
prompt) and which requests fail, how, in ``faults``. The names the old ``simulator`` module had
(``Simulator``, ``SimulatorConfig``, ``run_in_thread``, ``ok``...) are served from here.
"""

from .._legacy import package_getattr

__getattr__ = package_getattr(__name__)
