"""Layer 4 of 7: what a run folder holds: the run spec, checkpoints, amplifier
files, folder checks and logs."""
