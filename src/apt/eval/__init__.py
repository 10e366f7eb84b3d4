"""Evaluation of (pruned) models.

- :mod:`apt.eval.perplexity`: perplexity by the standard SparseGPT/Wanda protocol.
- :mod:`apt.eval.zeroshot`: zero-shot accuracy through lm-eval with the in-memory model, on the
  stock hub tasks or on our local copies (``apt/eval/tasks/``) of the offline task data.

Heavy libraries (lm-eval, datasets) are imported inside the functions that need them.
"""
