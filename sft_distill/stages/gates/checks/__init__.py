"""Deterministic checks of one generated sample, run before any judge is paid (zh and en).

Pure functions, no I/O. Each returns None when the sample passes, or a ``Finding`` with a short
reason and details:

- ``referential.find_referential``: the question (or answer) leans on a text the student will
  never see ("根据上述资料", "本合同" with no product named, "according to the passage above").
- ``evidence.check_evidence``: the teacher's verbatim evidence quotes are in the chunk (fuzzy,
  NFKC, case, spaces and punctuation ignored).
- ``numbers.check_numbers``: rule quantities, cited articles and laws of the answer come from
  the source or the question, or follow from them in one arithmetic step.
- ``truncation.find_truncation``: the answer stops mid-sentence (or ``finish_reason`` was
  ``length``).
- ``non_answer.find_non_answer``: "资料中没有提及", "I cannot determine", "请咨询专业人士" and
  nothing else.
- ``support.find_unsupported``: an invented rule sentence, or an answer restating another
  provision.

``base`` holds what they share (``Finding``, language, text normal forms), ``numerals`` numbers
written in words, ``provisions`` which provision a question is about. The quality gates
(``stages.gates.quality``) wrap each check; ``benchmarks/bench_quality.py`` measures them.
"""
