"""Model-level work: sequential block-by-block pruning with resumable checkpoints.

``prune_model(model, adapter, samples, settings, device, work_dir)`` prunes in place and returns
a report; ``sequential_logits`` runs the same machinery without pruning;
``save_checkpoint`` writes the HF folder and its report atomically.
"""

from apt.engine.checkpoint import WorkDir
from apt.engine.save import REPORT_NAME, save_checkpoint
from apt.engine.sequential import PruneSettings, prune_model, relative_error, sequential_logits

__all__ = ["PruneSettings", "REPORT_NAME", "WorkDir", "save_checkpoint", "prune_model", "relative_error", "sequential_logits"]
