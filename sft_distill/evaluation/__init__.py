"""Evaluating a fine-tuned student against the reference answers (sft-distill eval)."""
