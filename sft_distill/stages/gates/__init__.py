"""Gates: cheap checks on each sample before any judge is paid; a dropped sample is never judged.

``base`` has the ``Gate`` protocol and ``run_gates``; ``registry`` builds the gates a config asks
for; ``rules``, ``quality``, ``sql`` and ``pii`` are the built-in kinds (``checks`` holds the
deterministic checks the quality gates run).
"""
