"""What the tests share: the tiny configuration (:data:`TINY`, and as
``train`` flags :data:`TINY_FLAGS`), the command line run in-process
(:func:`cli_main`), synthetic run folders for tests that read results
(no training), a folder's every path and byte (:func:`folder_listing`), and
a user's own model (:func:`users_mlp`)."""
import json
import os

import jax
import jax.numpy as jnp

from ngrok_jax._src.storage.spec import make_spec

#: The tests' smallest training configuration (a+b mod 11, one block).
TINY = dict(task="a+b", p=11, dim=16, heads=2, depth=1, amp_hidden=(8, 8),
            batch_size=32, meta_every=2)
#: :data:`TINY`'s task and model as ``ngrok-jax train`` flags (every
#: method reads them).
TINY_MODEL_FLAGS = ["--task", "a+b", "--p", "11", "--dim", "16", "--heads",
                    "2", "--depth", "1", "--batch-size", "32"]
#: :data:`TINY`'s amplifier flags (only NeuralGrok reads them all: the
#: command line refuses them for a run without it).
TINY_AMP_FLAGS = ["--amp-hidden", "8,8", "--meta-every", "2"]
#: :data:`TINY` as ``ngrok-jax train`` flags, for runs with NeuralGrok.
TINY_FLAGS = TINY_MODEL_FLAGS + TINY_AMP_FLAGS


def cli_main(argv, capsys, hooks=()):
  """Runs the command line in-process.

  Returns:
    ``(exit status, stdout, stderr)``.
  """
  from ngrok_jax._src.cli import cli
  try:
    rc = cli.main(argv, hooks=hooks)
  except SystemExit as e:
    rc = e.code
  out, err = capsys.readouterr()
  return rc, out, err


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


def folder_listing(d):
  """Every path under ``d`` with the bytes of every file (``None`` for a
  folder): equal listings mean nothing in ``d`` changed."""
  out = {}
  for root, dirs, files in os.walk(d):
    for n in dirs:
      out[os.path.relpath(os.path.join(root, n), d)] = None
    for n in files:
      with open(os.path.join(root, n), "rb") as f:
        out[os.path.relpath(os.path.join(root, n), d)] = f.read()
  return out


def users_mlp():
  """A user's own model (not the library's transformer): a 2-layer tanh
  MLP regressing a smooth target, parameters in a plain dict; returns
  ``(params, loss)``."""
  kx, k1, k2 = jax.random.split(jax.random.PRNGKey(3), 3)
  x = jax.random.normal(kx, (128, 4))
  y = jnp.sin(x @ jnp.array([1.0, -2.0, 0.5, 1.5]))[:, None]
  params = {"hidden": {"w": 0.5 * jax.random.normal(k1, (4, 32)),
                       "b": jnp.zeros(32)},
            "out": (0.5 * jax.random.normal(k2, (32, 1)), jnp.zeros(1))}

  def loss(p):
    h = jnp.tanh(x @ p["hidden"]["w"] + p["hidden"]["b"])
    return jnp.mean(jnp.square(h @ p["out"][0] + p["out"][1] - y))
  return params, loss
