"""Experiment trackers (``--log tensorboard,wandb``): the TensorBoard event
files read back hold the metrics of metrics.jsonl, the config and the plots;
W&B in offline mode writes its run directories; a missing optional package
or W&B key is one line and exit status 2."""
import glob
import json
import os
import struct
import sys
import types

import numpy as np
import pytest

from ngrok_jax._src.cli import cli
from ngrok_jax._src.analysis.results import read_metrics
from ngrok_jax._src.running.trackers import run_names, scalars

# tests/test_cli.py's tiny configuration (shares its compiled adam program)
TINY = ["--task", "a+b", "--p", "11", "--dim", "16", "--heads", "2",
        "--depth", "1", "--batch-size", "32", "--seeds", "2", "--steps", "20",
        "--eval-every", "10", "--no-progress", "--methods", "adam"]


def _available(module):
  try:
    __import__(module)
    return True
  except ImportError:
    return False


def _wandb_records(path):
  """The records of a ``.wandb`` transaction log: a 7-byte header, then
  32 KiB blocks of chunks (crc32, length, type: 1 full, 2 first, 3 middle,
  4 last), each record a ``wandb_internal_pb2.Record``."""
  from wandb.proto import wandb_internal_pb2 as pb
  with open(path, "rb") as f:
    data = f.read()
  assert data[:4] == b":W&B"
  pos, block, part, out = 7, 32768, b"", []
  while pos + 7 <= len(data):
    left = block - pos % block
    _, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
    if left < 7 or (kind == 0 and n == 0):  # block trailer
      pos += left
      continue
    part += data[pos + 7:pos + 7 + n]
    pos += 7 + n
    if kind in (1, 4):
      rec = pb.Record()
      rec.ParseFromString(part)
      out.append(rec)
      part = b""
  return out


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
  """One run logged to every installed tracker (W&B offline)."""
  names = [n for n, m in (("tensorboard", "tensorboardX"), ("wandb", "wandb"))
           if _available(m)]
  if not names:
    pytest.skip("neither tensorboardX nor wandb is installed (pip install "
                "-e '.[tensorboard,wandb]')")
  out = str(tmp_path_factory.mktemp("trackers") / "run")
  mp = pytest.MonkeyPatch()
  mp.setenv("WANDB_MODE", "offline")
  mp.delenv("WANDB_API_KEY", raising=False)
  mp.setenv("WANDB_SILENT", "true")
  try:
    rc = cli.main(["train", *TINY, "--out", out, "--log", ",".join(names),
                   "--wandb-project", "ngrok-test"])
  finally:
    mp.undo()
  assert rc == 0
  return out


def test_tensorboard_event_files_hold_the_metrics(tracked):
  pytest.importorskip("tensorboardX", reason="optional extra: pip install "
                      "-e '.[tensorboard]'")
  ea = pytest.importorskip(
      "tensorboard.backend.event_processing.event_accumulator",
      reason="the reader: tensorboard (pip install -e '.[tensorboard]')")
  rows = read_metrics(tracked)
  assert len(rows) == 4  # 2 seeds x 2 evaluations
  for i, seed in enumerate((0, 1)):
    acc = ea.EventAccumulator(
        os.path.join(tracked, "tensorboard", "adam", f"seed{seed}"),
        size_guidance={ea.SCALARS: 0, ea.TENSORS: 0})
    acc.Reload()
    mine = [r for r in rows if r["seed"] == seed]
    keys = set(scalars(mine[0]))
    assert {"test/acc", "train/loss", "grad/age"} <= keys
    assert keys <= set(acc.Tags()["scalars"]), keys - set(acc.Tags()[
        "scalars"])
    for k in keys:
      got = [(e.step, e.value) for e in acc.Scalars(k)]
      want = [(r["step"], scalars(r)[k]) for r in mine]
      assert [s for s, _ in got] == [s for s, _ in want], k
      # TensorBoard stores float32
      np.testing.assert_allclose([v for _, v in got], [v for _, v in want],
                                 rtol=1e-6, err_msg=k)
    # the configuration as hyperparameters (hparams plugin) and as text
    assert "_hparams_/session_start_info" in acc.PluginTagToContent(
        "hparams")
    cfg = json.loads(acc.Tensors("config/text_summary")[0].tensor_proto
                     .string_val[0].decode().strip("`\n"))
    assert cfg["method"] == "adam" and cfg["seed"] == seed and \
        cfg["p"] == 11 and cfg["steps"] == 20
  # the plots of the run folder, as images of the `plots` run
  acc = ea.EventAccumulator(os.path.join(tracked, "tensorboard", "plots"),
                            size_guidance={ea.IMAGES: 0})
  acc.Reload()
  pngs = sorted(os.path.basename(p)[:-4] for p in
                glob.glob(os.path.join(tracked, "plots", "*.png")))
  assert "accuracy" in pngs
  assert sorted(t[len("plots/"):] for t in acc.Tags()["images"]) == pngs
  img = acc.Images("plots/accuracy")[0]
  assert img.width > 100 and img.height > 100


def test_wandb_offline_writes_its_run_directories(tracked):
  pytest.importorskip("wandb", reason="optional extra: pip install -e "
                      "'.[wandb]'")
  runs = sorted(glob.glob(os.path.join(tracked, "wandb", "offline-run-*")))
  with open(os.path.join(tracked, "wandb", "ids.json")) as f:
    ids = json.load(f)
  assert sorted(ids) == ["adam/seed0", "adam/seed1", "run/plots"]
  # one run directory per (method, seed) and one for the plots, by id
  assert sorted(r.rsplit("-", 1)[1] for r in runs) == sorted(ids.values())
  for r in runs:
    assert glob.glob(os.path.join(r, "run-*.wandb")), r
  rows = read_metrics(tracked)
  for seed in (0, 1):
    d = [r for r in runs if r.endswith(ids[f"adam/seed{seed}"])][0]
    recs = _wandb_records(glob.glob(os.path.join(d, "run-*.wandb"))[0])
    config = {i.key: json.loads(i.value_json) for r in recs
              if r.WhichOneof("record_type") == "run"
              for i in r.run.config.update}
    assert config["method"] == "adam" and config["seed"] == seed and \
        config["seed_index"] == seed and config["p"] == 11, config
    history = [{i.key or "/".join(i.nested_key): json.loads(i.value_json)
                for i in r.history.item} for r in recs
               if r.WhichOneof("record_type") == "history"]
    mine = [r for r in rows if r["seed"] == seed]
    assert [h["_step"] for h in history] == [r["step"] for r in mine]
    for h, r in zip(history, mine):
      want = scalars(r)
      assert {k: h[k] for k in want} == want


def test_missing_package_or_key_is_one_line_and_exit_2(tmp_path, capsys,
                                                       monkeypatch):
  out = str(tmp_path / "r")
  monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import fails
  assert cli.main(["train", *TINY, "--out", out, "--log",
                   "tensorboard"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("ngrok-jax train: error:"), err
  assert "pip install -e '.[tensorboard]'" in err[0], err
  monkeypatch.setitem(sys.modules, "wandb", None)
  assert cli.main(["train", *TINY, "--out", out, "--log", "wandb"]) == 2
  assert "pip install -e '.[wandb]'" in capsys.readouterr().err
  # W&B online without WANDB_API_KEY: refused (no prompt, no key file)
  monkeypatch.setitem(sys.modules, "wandb", types.ModuleType("wandb"))
  monkeypatch.setenv("WANDB_MODE", "online")
  monkeypatch.delenv("WANDB_API_KEY", raising=False)
  assert cli.main(["train", *TINY, "--out", out, "--log", "wandb"]) == 2
  assert "WANDB_API_KEY" in capsys.readouterr().err
  assert not os.path.exists(out)  # nothing was trained
  with pytest.raises(SystemExit) as e:
    cli.main(["train", *TINY, "--log", "mlflow"])
  assert e.value.code == 2


def test_scalars_and_run_names():
  row = {"method": "adam", "seed": 3, "step": 10, "test/acc": 0.5,
         "train/loss": "nan", "grad/age": "inf", "diverged_at": -1,
         "note": "x", "other": None}
  got = scalars(row)
  assert set(got) == {"test/acc", "train/loss", "grad/age", "diverged_at"}
  assert got["grad/age"] == float("inf") and got["train/loss"] != \
      got["train/loss"]
  spec = types.SimpleNamespace(seeds=[0, 1, 2, 3],
                               hparams={"c": [0.5, 0.5, 2.0, 2.0]})
  assert run_names(spec) == ["seed0-c=0.5", "seed1-c=0.5", "seed2-c=2",
                             "seed3-c=2"]
