"""Layer 2 of 7: gradient transformations: the amplifier, optax transforms,
NeuralGrok's bilevel update, EGD, the learned rule and its outer trainer,
the method registry."""
