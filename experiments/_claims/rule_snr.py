"""Claims and tables of "A rule that starts at Muon: before meta-training"
(RESULTS.md): the initial rule's steps to 95% on the meta-training inner
problem and the PES estimate's signal to noise (``experiments/rule_snr.py``,
exported to ``experiments/results/rule_snr``)."""
import json

import numpy as np

from experiments._claims.base import CLAIMS, TABLES, Claim, Table
from ngrok_jax.tables import md_table

SNR = "rule_snr"
BENCH = "bench_meta_step_cpu.json"


def _rows(D, part):
  with open(D.path(f"{SNR}/rows.jsonl")) as f:
    return [r for r in map(json.loads, filter(str.strip, f))
            if r["part"] == part]


def _horizon(D):
  """Every run's steps to 95% (inf: not within the run) and the budget."""
  steps = [np.inf if s is None else s for r in _rows(D, "horizon")
           for s in r["steps_to_95"]]
  cfg = D.json(f"{SNR}/snr_config.json")
  return np.asarray(steps, float), cfg


def horizon_table(D):
  rows = []
  for r in _rows(D, "horizon"):
    rows.append([r["p"], r["task"], ", ".join(
        "-" if s is None else str(s) for s in r["steps_to_95"]),
                 ", ".join(f"{a:.3f}" for a in r["final_test_acc"])])
  return md_table(["prime", "task", "steps to 95% per seed (-: not in "
                   "the run)", "final test accuracy"], rows)


def _pairs(units, snr):
  return "-" if snr <= 0 else f"{units / snr:.0f}"


def snr_table(D):
  """Per truncation and rule size: the SNR with its standard error, the
  naive ratio, and the pairs one outer step needs for SNR 1 (SNR scales
  with the pairs): from the estimate, and at least (from the estimate plus
  two standard errors)."""
  rows = []
  for r in sorted(_rows(D, "snr"), key=lambda r: (r["truncation"],
                                                  r["hidden"])):
    rows.append([r["truncation"], r["hidden"], r["rule_params"], r["units"],
                 f"{r['snr']:.3f} ({r['snr_se']:.3f})", f"{r['ratio']:.2f}",
                 _pairs(r["units"], r["snr"]),
                 _pairs(r["units"], r["snr"] + 2 * r["snr_se"])])
  return md_table(["truncation", "hidden", "rule parameters", "pairs",
                   "SNR (s.e.)", "naive ratio", "pairs for SNR 1",
                   "at least"], rows)


def _median_text(D):
  steps, cfg = _horizon(D)
  return (f"median {np.median(steps):.0f} steps ({int(np.isfinite(steps).sum())}"
          f" of {steps.size} runs reached 95% within {cfg['horizon_steps']})")


def _range_text(D):
  steps, _ = _horizon(D)
  fin = steps[np.isfinite(steps)]
  return f"between {fin.min():.0f} and {fin.max():.0f} steps"


def _snr_setting(D):
  r = _rows(D, "snr")[0]
  return (f"{r['particles']} particles in {r['units']} antithetic pairs, "
          f"{r['steps']} truncations, inner runs of {r['horizon']} steps")


def _pairs_at_least(D):
  low = min(r["units"] / (r["snr"] + 2 * r["snr_se"])
            for r in _rows(D, "snr") if r["snr"] + 2 * r["snr_se"] > 0)
  return f"at least {low:.0f} antithetic pairs"


def _horizon_used(D):
  return f"inner runs of {_rows(D, 'snr')[0]['horizon']} steps"


TABLES.append(Table("rule.horizon", (SNR,), horizon_table))
TABLES.append(Table("rule.snr", (SNR,), snr_table))
CLAIMS.append(Claim("rule.horizon.median", (SNR,), _median_text))
CLAIMS.append(Claim("rule.horizon.range", (SNR,), _range_text))
CLAIMS.append(Claim("rule.snr.setting", (SNR,), _snr_setting))
CLAIMS.append(Claim("rule.snr.pairs", (SNR,), _pairs_at_least))
CLAIMS.append(Claim("rule.snr.horizon", (SNR,), _horizon_used))


def _bench(D):
  b = D.json(BENCH)
  m = b["median_seconds"]
  return (f"{1e3 * m['particle_step[muon]']:.2f} ms against "
          f"{1e3 * m['seed_step']:.2f} ms, {b['ratio']['particle_step[muon]']:.2f}x"
          f" (the earlier rule's {b['ratio']['particle_step[update]']:.2f}x)")


CLAIMS.append(Claim("rule.bench.ratio", (BENCH,), _bench))
