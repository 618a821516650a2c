"""``ngrok-jax amplifier PATH``: show, export or plot a trained amplifier
(called by :mod:`ngrok_jax.cli`)."""
from __future__ import annotations

import json
import os

from ngrok_jax._src.cli.cli_common import UsageError

__all__ = ["cmd_amplifier"]


def cmd_amplifier(args) -> int:
  """ngrok-jax amplifier PATH: describe, tabulate, export or plot."""
  import numpy as np
  import jax
  import jax.numpy as jnp
  from ngrok_jax._src.optim.amplifier import Amplifier
  from ngrok_jax._src.storage.ampfile import load_amplifier, save_amplifier
  from ngrok_jax._src.core.fileio import atomic_write
  from ngrok_jax._src.core.tables import md_table
  params, meta = load_amplifier(args.path, args.seed_index)
  from ngrok_jax._src.storage.ampfile import check_fits
  from ngrok_jax._src.training.config import TrainConfig
  if meta.get("amp_inputs", "grad") == "grad":  # weights fit the metadata
    check_fits(args.path, TrainConfig(amp_hidden=tuple(meta["hidden"])))
  rich = meta.get("amp_inputs", "grad") == "rich"
  if rich and args.plot:
    raise UsageError("--plot draws the 1-input score function f(g); this "
                     "amplifier has rich inputs (amp_inputs=rich)")
  n = sum(int(np.size(l)) for l in jax.tree.leaves(params))
  lo, hi = meta["grad_range"]
  print(f"amplifier {'4' if rich else '1'}-"
        f"{'-'.join(map(str, meta['hidden']))}-1"
        f"{' with a per-tensor embedding' if rich else ''} ({n} params), "
        f"trained on {meta['task']} mod {meta['p']} for {meta['step']} steps, "
        f"seed {meta['seeds'][args.seed_index]} "
        f"(index {args.seed_index} of {len(meta['seeds'])})")
  print(f"gradient components seen: [{lo:.3g}, {hi:.3g}]; steps to 95%: "
        f"{meta.get('steps_to_95')}")
  if not rich:  # rich inputs: no 1-D score function to tabulate
    amp = Amplifier(tuple(meta["hidden"]), meta.get("amp_method", "pwl"))
    span = max(abs(lo), abs(hi))
    xs = np.linspace(-span, span, 9).astype(np.float32)
    ys = np.asarray(amp.apply(params, jnp.asarray(xs)))
    print(md_table(["g", "score f(g)"],
                   [(f"{x:.3g}", f"{y:.4g}") for x, y in zip(xs, ys)]))
  if args.export:
    ext = os.path.splitext(args.export)[1]
    flat = {jax.tree_util.keystr(k): np.asarray(v) for k, v in
            jax.tree_util.tree_flatten_with_path(params)[0]}
    if ext == ".npz":
      import io
      buf = io.BytesIO()
      np.savez(buf, **flat, meta=json.dumps(
          {k: v for k, v in meta.items() if k != "example"}))
      atomic_write(args.export, buf.getvalue())
    elif ext == ".msgpack":
      one = jax.tree.map(lambda a: np.asarray(a)[None], params)
      c = meta.get("c")
      m2 = dict(meta, seeds=[meta["seeds"][args.seed_index]],
                c=[c[args.seed_index]] if c else None)
      save_amplifier(args.export, one, m2)
    else:
      raise UsageError(f"--export must end in .npz or .msgpack, got "
                       f"{args.export!r}")
    print(f"exported to {args.export}")
  if args.plot:
    from ngrok_jax._src.analysis.plots import plot_amplifier
    plot_amplifier(args.path, args.plot)
    print(f"plot written to {args.plot}")
  return 0
