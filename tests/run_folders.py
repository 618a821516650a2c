"""Synthetic run folders for tests that read results (no training)."""
import json
import os

from ngrok_jax.spec_build import make_spec


def write_run_folder(path, methods, seeds, rows, steps, eval_every=100,
                     hparams=None, overrides=None) -> str:
  """A run folder (config.json, metrics.jsonl) for ``a+b mod 11``."""
  spec = make_spec(dict(task="a+b", p=11), methods, seeds, steps,
                   eval_every, hparams=hparams,
                   method_overrides=overrides)
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(spec.to_dict(), f)
  with open(os.path.join(path, "metrics.jsonl"), "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)
  return str(path)
