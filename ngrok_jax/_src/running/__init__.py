"""Layer 6 of 7: the multi-seed runner: loop, hooks, trackers, cross-task
meta-training."""
