"""Layer 7 of 7: the ngrok-jax command."""
