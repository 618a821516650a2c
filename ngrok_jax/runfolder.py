"""Run folders that are never lost: one writer per folder (an OS lock held
for the writer's life), the rollback of a failed start, the full disk
and the log noise of orbax kept in the folder's ``errors.log``; for scripts that write a folder of their own (as
``experiments/meta_train.py`` does).

The public names of this part of the library; their code:
``ngrok_jax._src.storage.runfolder`` (the full disk and
the noise: ``ngrok_jax._src.storage.run_noise``).
"""
from ngrok_jax._src.storage.runfolder import Guard, FolderBusy, mark_progress
from ngrok_jax._src.storage.run_noise import (EXIT_DISK_FULL, is_disk_full,
                                              Noise)

__all__ = [
    "Guard", "FolderBusy", "mark_progress", "EXIT_DISK_FULL", "is_disk_full",
    "Noise",
]
