"""Run folders that are never lost: one writer per folder (an OS lock held
for the writer's life), checks before the first byte, and the rollback of
a failed start; for scripts that write a folder of their own (as
``experiments/meta_train.py`` does).

The public names of this part of the library; their code:
``ngrok_jax._src.storage.runfolder``.
"""
from ngrok_jax._src.storage.runfolder import (Guard, FolderBusy,
                                              mark_progress,
                                              check_new_folder)

__all__ = [
    "Guard", "FolderBusy", "mark_progress", "check_new_folder",
]
