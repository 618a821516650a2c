"""Layer 3 of 7: one configuration's training: TrainConfig, the pieces of a
method, the jitted seed-vmapped programs, presets."""
