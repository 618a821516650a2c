import sys

from ngrok_jax.cli import main

sys.exit(main())
