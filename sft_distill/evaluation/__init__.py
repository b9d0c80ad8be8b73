"""Evaluating a fine-tuned student against the reference answers (``sft-distill eval``).

``questions`` (what is asked, with its reference and source) -> ``targets`` (who is asked, the
eval's config) -> ``runner`` (ask, score, compare in both orders, run SQL; writes ``eval/``) ->
``summary`` (the figures, with ``stats``) -> ``report_html``; ``prompts`` holds the student's
training prompt and the pairwise judge's, ``estimate`` the ``--estimate`` figures.
"""
