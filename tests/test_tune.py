"""The tuning experiment's pure parts: grids, seeds and the choice of cell."""
import math

import pytest

from experiments import tune


def test_cells_and_seeds_of_a_grid():
  cells = tune.cells_of({"lr": (1e-3, 3e-3), "wd": (0.0, 1.0, 2.0)})
  assert cells[:2] == [dict(lr=1e-3, wd=0.0), dict(lr=1e-3, wd=1.0)]
  assert len(cells) == 6 and cells[-1] == dict(lr=3e-3, wd=2.0)
  seeds, hp = tune.grid_seeds(cells, 2)
  assert seeds == list(range(1000, 1012))
  assert hp["wd"][:4] == [0.0, 0.0, 1.0, 1.0] and hp["lr"][-1] == 3e-3


def test_default_grids():
  assert tune.default_grid("adamw")["wd"] == (0.3, 1.0, 3.0)
  assert 0.0 in tune.default_grid("orthograd")["wd"]
  assert "lamb" in tune.default_grid("grokfast-ma")
  assert "lamb" not in tune.default_grid("neuralgrok")


def _summary(steps, final):
  return {"steps": 2000, "methods": {"m": dict(
      seeds=list(range(len(steps))), steps_to_95=steps,
      final_test_acc=final)}}


def test_rank_cells_median_then_success_then_final_accuracy():
  cells = [dict(wd=w) for w in (0.0, 1.0, 2.0, 3.0, 4.0)]
  steps = [None, None,      # cell 0: never
           900, None,       # cell 1: median of (900, inf) = inf
           None, 1500,      # cell 2: as cell 1, higher final accuracy
           700, 1100,       # cell 3: median 900
           800, 1000]       # cell 4: median 900, same success: final acc
  final = [0.5, 0.4, 0.99, 0.6, 0.7, 0.99, 1.0, 1.0, 1.0, 0.999]
  ranked = tune.rank_cells(_summary(steps, final), "m", cells, 2)
  assert [r["index"] for r in ranked] == [3, 4, 2, 1, 0]
  assert ranked[0]["median"] == 900 and ranked[0]["success"] == 2
  assert math.isinf(ranked[-1]["median"]) and ranked[-1]["success"] == 0
  assert ranked[2]["final_acc"] == pytest.approx(0.845)  # (0.7, 0.99)


def test_parse_grid():
  assert tune.parse_grid(["lr=1e-3,3e-3", "wd=0"]) == {
      "lr": (1e-3, 3e-3), "wd": (0.0,)}
  for bad in ("eps=1", "lr", "lr=a,b"):
    with pytest.raises(ValueError, match="--grid"):
      tune.parse_grid([bad])


def test_fair_table_reads_the_committed_tuning_folder():
  """The committed a+b tuning folder: the table's medians and the speed-up
  against AdamW recomputed from its held-out summary."""
  import json
  import os
  d = os.path.join(os.path.dirname(os.path.dirname(__file__)),
                   "experiments", "results", "tune", "a+b")
  table = tune.fair_table([d]).splitlines()
  with open(os.path.join(d, "heldout", "summary.json")) as f:
    per = json.load(f)["methods"]
  rows = {r.split("|")[1].strip(): [c.strip() for c in r.split("|")[2:-1]]
          for r in table[2:]}
  assert set(rows) == set(per)
  ref = per["adamw"]["steps_to_95"]
  for m, cells in rows.items():
    steps = per[m]["steps_to_95"]
    ok = [s for s in steps if s is not None]
    assert cells[0].endswith(f"({len(ok)}/{len(steps)})")
    both = [(a, b) for a, b in zip(ref, steps) if None not in (a, b)]
    if m != "adamw" and both:
      want = math.exp(sum(math.log(a / b) for a, b in both) / len(both))
      assert cells[2] == f"{want:.2f}x (n {len(both)})"


def test_widened_passes_only_the_edges_it_can():
  grid = {"lr": (1e-3, 3e-3, 1e-2), "wd": (0.0, 0.3, 1.0)}
  # interior lr, wd at its natural lower end 0: nothing to widen
  assert tune.widened(grid, dict(lr=3e-3, wd=0.0)) == grid
  wide = tune.widened(grid, dict(lr=1e-2, wd=1.0))
  assert wide["lr"][:3] == grid["lr"] and wide["lr"][3] == pytest.approx(
      1e-2 * 1e-2 / 3e-3)
  assert wide["wd"] == (0.0, 0.3, 1.0, pytest.approx(1.0 / 0.3))
  low = tune.widened({"lr": (1e-3, 3e-3), "wd": (0.3, 1.0)},
                     dict(lr=1e-3, wd=0.3))
  assert low["lr"][0] == pytest.approx(1e-3 / 3) and low["lr"][1:] == (
      1e-3, 3e-3)
  assert low["wd"][0] == pytest.approx(0.09)
  # the new cells are the ones the widened grid adds
  new = [c for c in tune.cells_of(wide) if c not in tune.cells_of(grid)]
  assert len(new) == 4 * 4 - 3 * 3


def test_shared_seeding_runs_every_cell_on_the_same_seeds(tmp_path):
  """Protects the tuning protocol (issue 37): with ``seeding="shared"``
  every cell of the grid runs on the same tuning seeds (its own run folder,
  ``grid/<method>/cell-<k>``), so the chosen cell differs from the others
  by its settings only; the distinct protocol gives each cell its own."""
  import json
  import os
  import types
  assert tune.grid_seeds([{"lr": 1.0}] * 3, 2, "shared")[0] == [
      1000, 1001] * 3
  with pytest.raises(ValueError, match="seeding must be one of"):
    tune.grid_seeds([{"lr": 1.0}], 2, "paired")
  setup = dict(preset="paper-add", steps=4, eval_every=2, seeds=1,
               checkpoint_every=0,
               config=dict(p=11, dim=16, heads=2, depth=1, batch_size=32))
  args = types.SimpleNamespace(seeding="shared", stop_after=None,
                               no_progress=True, no_plots=True, widen=0)
  out = str(tmp_path / "tune")
  res = tune.tune(setup, "a+b", ["adamw"],
                  {"adamw": {"lr": (1e-3, 3e-3), "wd": (1.0,)}}, 2, 1, out,
                  args, reference="adamw")
  ranked = res["methods"]["adamw"]["ranked"]
  assert [r["seeds"] for r in ranked] == [[1000, 1001]] * 2
  assert res["seeding"] == "shared"
  for k, lr in enumerate((1e-3, 3e-3)):
    cfg = json.load(open(os.path.join(out, "grid", "adamw", f"cell-{k}",
                                      "summary.json")))
    assert cfg["methods"]["adamw"]["seeds"] == [1000, 1001]
    run = json.load(open(os.path.join(out, "grid", "adamw", f"cell-{k}",
                                      "config.json")))
    assert run["hparams"]["lr"] == [lr, lr]
  with open(os.path.join(out, "TUNE.md")) as f:
    assert "tuning seeds per cell (shared)" in f.read()
