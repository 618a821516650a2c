"""Layer 1 of 7: leaf utilities and the problem: tasks, model, metrics, file
writes, tables, sharding and processes (no ngrok_jax import)."""
