"""APT: optimal multi-weight pruning of large language models without retraining."""

__version__ = "0.1.0"
