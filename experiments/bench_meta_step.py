"""What a meta-training particle-step costs against a training seed-step.

Times, in one process and alternating so that both see the same load:

* ``seed_step``: the harness's compiled training program (``train_steps``,
  method ``muon`` at the rule's lr and wd) over ``--seeds`` seeds and
  ``--steps`` scanned steps, per seed and step;
* ``particle_step[<placement>]``: one PES outer step of
  ``ngrok_jax.pes.make_outer_step`` on the meta-training inner problem
  (``ngrok_jax.rule_tasks``, same model size and batch) with
  ``--particles`` particles and truncation ``--steps``, per particle and
  step, for each rule placement in ``--placements`` (``muon``: the
  orthogonalised harness, ``update``: the earlier rule).

The record holds every repeat, the medians and the ratio particle-step /
seed-step (issue target: about 1.5 at most).

    python -m experiments.bench_meta_step --json experiments/results/bench_meta_step_cpu.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import jax
import optax

from experiments.bench_common import Program, device_name
from ngrok_jax import RuleConfig, TrainConfig, init_rule, pes
from ngrok_jax import rule_tasks as rt
from ngrok_jax.learned_rule import muon_config
from ngrok_jax.results import atomic_write


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
  a = p.add_argument
  a("--p", type=int, default=43)
  a("--dim", type=int, default=64)
  a("--batch-size", type=int, default=128)
  a("--seeds", type=int, default=16)
  a("--particles", type=int, default=16)
  a("--steps", type=int, default=50)
  a("--hidden", type=int, default=8)
  a("--placements", default="muon,update")
  a("--repeats", type=int, default=5)
  a("--lr", type=float, default=1e-2)
  a("--wd", type=float, default=1.0)
  a("--json", default=None, help="write the record here")
  return p


class _Outer:
  """One jitted PES outer step of the inner problem, timed per
  particle-step."""

  def __init__(self, args, placement: str):
    rule = (muon_config(lr=args.lr, wd=args.wd, hidden=(args.hidden,))
            if placement == "muon" else
            RuleConfig(placement=placement, hidden=(args.hidden,),
                       lr=args.lr))
    inner = rt.ArithConfig(p=args.p, dim=args.dim, batch_size=args.batch_size)
    task = rt.arith_task(inner, rule)
    cfg = pes.OuterConfig(num_particles=args.particles,
                          truncation=args.steps, horizon=10 * args.steps,
                          num_groups=len(inner.tasks))
    opt = optax.adam(1e-3)
    self.state = pes.init(cfg, task, init_rule(rule, jax.random.PRNGKey(0)),
                          jax.random.PRNGKey(1), opt)
    self.step = pes.make_outer_step(cfg, task, opt)
    self.n = args.particles * args.steps
    t0 = time.perf_counter()
    self.run_once()
    self.compile_seconds = time.perf_counter() - t0

  def run_once(self) -> float:
    t0 = time.perf_counter()
    self.state, m = self.step(self.state)
    jax.block_until_ready((self.state, m))
    return (time.perf_counter() - t0) / self.n


def main(argv=None) -> int:
  args = parser().parse_args(argv)
  if min(args.seeds, args.particles, args.steps, args.repeats) < 1 or (
      args.particles % 2):
    print("error: --seeds, --steps, --repeats >= 1 and --particles even",
          file=sys.stderr)
    return 2
  cfg = TrainConfig(method="muon", task="a+b", p=args.p, depth=1,
                    dim=args.dim, heads=4, batch_size=args.batch_size,
                    lr=args.lr, wd=args.wd).validate()
  harness = Program(cfg, args.seeds, args.steps)
  outers = {pl: _Outer(args, pl) for pl in args.placements.split(",")}
  harness.run_once()
  times = {"seed_step": []} | {f"particle_step[{pl}]": [] for pl in outers}
  for _ in range(args.repeats):  # alternate: the same load for each
    times["seed_step"].append(harness.run_once() / args.seeds)
    for pl, o in outers.items():
      times[f"particle_step[{pl}]"].append(o.run_once())
  med = {k: statistics.median(v) for k, v in times.items()}
  rec = dict(vars(args), device=device_name(), seconds=times,
             median_seconds=med,
             ratio={k: med[k] / med["seed_step"] for k in med
                    if k != "seed_step"},
             compile_seconds={"seed_step": harness.compile_seconds} | {
                 f"particle_step[{pl}]": o.compile_seconds
                 for pl, o in outers.items()})
  for k, v in med.items():
    print(f"{k}: {1e3 * v:.2f} ms" + (
        f" ({rec['ratio'][k]:.2f}x the seed-step)" if k in rec["ratio"]
        else ""))
  if args.json:
    atomic_write(args.json, json.dumps(rec, indent=1))
  return 0


if __name__ == "__main__":
  sys.exit(main())
