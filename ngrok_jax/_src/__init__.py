"""The implementation of ngrok_jax, in layers (lowest first): core, optim,
training, storage, analysis, running, cli. A layer imports only itself and
the layers before it (tests/test_layout.py). Nothing here is public: the
public names are those of ``ngrok_jax`` and its facade modules
(docs/layout.md)."""
