"""A run folder is never lost: ``--resume --force``, failed starts, foreign
files, resource limits, one-line errors and options that do not apply.

Each test names in its docstring the data it protects.  The runs are tiny
(adam, p 11, depth 1, dim 16) and in-process (``cli.main``); one trained
run folder is shared (copied) by the resume tests."""
import json
import logging
import os
import shutil

import jax
import numpy as np
import pytest

from ngrok_jax._src.cli import cli
from ngrok_jax._src.storage import run_noise, runfolder
from ngrok_jax._src.running import runner
from ngrok_jax._src.storage.ampfile import save_amplifier
from ngrok_jax._src.storage.checkpoint import CheckpointMismatch, Checkpointer
from ngrok_jax._src.training.config import TrainConfig
from ngrok_jax._src.running.hooks import Chunk, DivergenceBound
from ngrok_jax._src.training.methods import init_amplifier_params
from ngrok_jax._src.analysis.results import read_metrics, summarize
from ngrok_jax._src.storage.spec import make_spec
from run_folders import (TINY_MODEL_FLAGS, cli_main, folder_listing,
                         write_run_folder)

TINY = TINY_MODEL_FLAGS + ["--seeds", "2", "--eval-every", "10", "--no-progress",
                     "--no-plots"]
RUN = ["train"] + TINY + ["--methods", "adam", "--steps", "40",
                          "--checkpoint-every", "10"]


_main = cli_main


def _error_line(err):
  lines = [l for l in err.splitlines() if "error" in l]
  assert len(lines) == 1 and "Traceback" not in err, err
  return lines[0]


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
  """A finished 40-step adam run with checkpoints 20, 30, 40."""
  d = str(tmp_path_factory.mktemp("safety") / "R")
  assert cli.main(RUN + ["--out", d]) == 0
  return d


@pytest.fixture
def run_copy(base_run, tmp_path):
  """A copy of the base run whose newest checkpoint (40) is gone: a resume
  continues from step 30."""
  d = str(tmp_path / "R")
  shutil.copytree(base_run, d)
  shutil.rmtree(os.path.join(d, "checkpoints", "adam", "40"))
  return d


def _amp_file(path, hidden=(8,), seeds=(0, 1), meta_hidden=None, drop=()):
  """A synthetic amplifier file (no training): init weights per seed."""
  cfg = TrainConfig(method="neuralgrok", amp_hidden=tuple(hidden))
  one = init_amplifier_params(cfg, jax.random.PRNGKey(0))
  params = jax.tree.map(lambda a: np.stack([np.asarray(a)] * len(seeds)),
                        one)
  meta = dict(hidden=list(meta_hidden or hidden), amp_method="pwl",
              amp_inputs="grad", seeds=list(seeds), task="a+b", p=11,
              step=10, c=[0.2] * len(seeds), grad_range=[-1.0, 1.0],
              grad_range_final=[-1.0, 1.0], steps_to_95=[None] * len(seeds))
  for k in drop:
    meta.pop(k)
  save_amplifier(path, params, meta)
  return path


# ---------------------------------------------------------------- case 1
def test_force_shape_change_is_refused_before_touching_anything(
    run_copy, capsys):
  """Protects the checkpoints, config.json and metrics.jsonl of a run
  against ``--resume --force`` with a field that fixes the state's shapes:
  refused naming the field, nothing renamed or rewritten; a plain resume
  afterwards continues from the checkpoint (not from step 0)."""
  before = folder_listing(run_copy)
  rc, _, err = _main(["train", "--resume", run_copy, "--dim", "64",
                      "--force"], capsys)
  assert rc == 2 and "configs.adam.dim" in _error_line(err)
  assert folder_listing(run_copy) == before
  rc, _, err = _main(["train", "--resume", run_copy, "--no-progress",
                      "--no-plots"], capsys)
  assert rc == 0 and "resuming from step 30" in err
  assert max(r["step"] for r in read_metrics(run_copy)) == 40


def test_checkpoint_of_another_configuration_is_never_moved_aside(tmp_path):
  """Protects readable checkpoints: one whose state does not fit the
  template (another configuration) raises CheckpointMismatch and stays."""
  ck = Checkpointer(str(tmp_path / "ck"), async_save=False)
  ck.save(10, {"w": np.zeros((2, 3), np.float32)}, {})
  with pytest.raises(CheckpointMismatch):
    ck.restore_latest({"w": np.zeros((2, 4), np.float32)})
  assert ck.steps() == [10]
  assert not [n for n in os.listdir(tmp_path / "ck") if "corrupt" in n]
  ck.close()


# ---------------------------------------------------------------- case 2
def test_force_hyperparameter_takes_effect_and_is_recorded(run_copy, capsys):
  """Protects the meaning of the metrics: after ``--resume --force --lr``
  the training state carries the new lr from the resumed step, and the
  change with that step is recorded in changes.jsonl."""
  seen = []
  rc, _, err = _main(["train", "--resume", run_copy, "--lr", "0.01",
                      "--force", "--no-progress", "--no-plots"], capsys,
                     hooks=[lambda c: seen.append(
                         np.asarray(c.state.seeds.hparams["lr"]))])
  assert rc == 0, err
  assert seen and all(np.allclose(v, 0.01) for v in seen)
  with open(os.path.join(run_copy, runfolder.HISTORY)) as f:
    events = [json.loads(l) for l in f]
  assert events[0]["fields"]["configs.adam.lr"]["new"] == 0.01
  assert events[1] == dict(event="resume", method="adam", step=30)


# ---------------------------------------------------------------- case 3
def test_failed_start_leaves_the_folder_as_it_was_and_retry_works(
    tmp_path, capsys):
  """Protects the --out folder: a start that fails (bad p, an amplifier
  whose weights do not match its metadata, an error in the first chunk)
  leaves no half-made run behind, so the fixed command works."""
  out = str(tmp_path / "new")
  rc, _, err = _main(RUN + ["--p", "100003", "--out", out], capsys)
  assert rc == 2 and "p must be <=" in _error_line(err)
  amp = _amp_file(str(tmp_path / "amp.msgpack"), hidden=(8,),
                  meta_hidden=(16,))
  rc, _, err = _main(RUN + ["--methods", "neuralgrok-frozen", "--amplifier",
                            amp, "--out", out], capsys)
  assert rc == 2 and "do not match" in _error_line(err)
  rc, _, err = _main(["amplifier", amp], capsys)
  assert rc == 2 and "do not match" in _error_line(err)
  assert not os.path.exists(out)

  def boom(chunk):
    raise RuntimeError("a failing hook")
  os.makedirs(out)
  with pytest.raises(RuntimeError):
    cli.main(RUN + ["--steps", "10", "--out", out], hooks=[boom])
  assert os.listdir(out) == []  # empty as before
  with pytest.raises(ValueError, match="seed_group"):
    runner.run(dict(task="a+b", p=11, depth=1, dim=16, heads=2), "adam", 2,
               10, 10, out_dir=out, seed_group=0)
  assert os.listdir(out) == []
  rc, _, err = _main(RUN + ["--steps", "10", "--out", out], capsys)
  assert rc == 0, err


def test_guard_restores_replaced_run_files(tmp_path):
  """Protects config.json of an existing run from a resume that fails
  before it trains a chunk (what it created is removed, but the run's
  errors.log, which explains the failure)."""
  d = tmp_path / "r"
  d.mkdir()
  (d / "config.json").write_text("old config")
  with pytest.raises(KeyError):
    with runfolder.Guard(str(d)):
      (d / "config.json").write_text("new config")
      (d / "errors.log").write_text("x")
      (d / "checkpoints").mkdir()
      raise KeyError("fails")
  assert sorted(os.listdir(d)) == ["config.json", "errors.log"]  # log kept
  assert (d / "config.json").read_text() == "old config"


# ---------------------------------------------------------------- case 4
def test_p_and_memory_are_bounded_before_allocating(monkeypatch):
  """Protects the machine's memory: p above the bound and a run whose
  estimated data + state exceed the available memory are refused, with
  the estimate."""
  with pytest.raises(ValueError, match="p must be <="):
    runfolder.check_resources(make_spec(dict(task="a+b", p=100003),
                                        "adam", 2, 10, 10))
  spec = make_spec(dict(task="a+b", p=97, depth=1, dim=32, heads=2),
                   "adam", 2, 10, 10)
  small = runfolder.estimate_bytes(spec)
  more = runfolder.estimate_bytes(make_spec(
      dict(task="a+b", p=97, depth=1, dim=32, heads=2), "adam", 8, 10, 10))
  assert 0 < small < more
  monkeypatch.setattr(runfolder, "_available_bytes", lambda: small // 2)
  with pytest.raises(ValueError, match="GiB"):
    runfolder.check_resources(spec)


# ---------------------------------------------------------------- case 5
def test_foreign_files_are_never_overwritten(tmp_path, capsys):
  """Protects files the library did not write: a folder with files but no
  run of ours is refused, naming them, and left untouched."""
  d = tmp_path / "theirs"
  d.mkdir()
  (d / "metrics.jsonl").write_text("my own data\n")
  rc, _, err = _main(RUN + ["--out", str(d)], capsys)
  assert rc == 2 and "metrics.jsonl" in _error_line(err)
  assert os.listdir(d) == ["metrics.jsonl"]
  assert (d / "metrics.jsonl").read_text() == "my own data\n"


# ---------------------------------------------------------------- case 6
def test_library_noise_goes_once_to_the_run_folder(tmp_path, capfd):
  """Protects the terminal's one-line errors: orbax (absl) and asyncio log
  floods and background-thread exceptions go to errors.log, each once."""
  import sys
  root = logging.getLogger()
  shown = logging.StreamHandler(sys.stderr)  # as basicConfig would
  root.addHandler(shown)
  try:
    _make_noise(tmp_path)
  finally:
    root.removeHandler(shown)
  _, err = capfd.readouterr()
  assert "Event loop" not in err and "ZeroDivision" not in err
  text = (tmp_path / run_noise.NOISE_LOG).read_text()
  assert text.count("Traceback") == 2 and "repeated 50 times" in text


def _make_noise(tmp_path):
  import threading
  with run_noise.Noise(str(tmp_path)):
    for _ in range(50):
      try:
        raise RuntimeError("Event loop is closed")
      except RuntimeError:
        logging.getLogger("absl").error("[thread=%d] failed", 1,
                                        exc_info=True)
    t = threading.Thread(target=lambda: 1 / 0)
    t.start()
    t.join()


def test_disk_full_has_its_own_exit_status_and_one_line(monkeypatch,
                                                         capsys):
  """Protects scripts that tell a full disk (exit 3, resume later) from a
  bad option (exit 2)."""
  def full(args, hooks=()):
    raise ValueError("RESOURCE_EXHAUSTED: Failed writing: No space left on "
                     "device [os_error_code='28']")
  monkeypatch.setattr(cli, "_cmd_train", full)
  rc, _, err = _main(RUN + ["--out", "x"], capsys)
  assert rc == run_noise.EXIT_DISK_FULL == 3
  assert "disk full" in _error_line(err)


def test_skipping_message_is_complete(tmp_path, monkeypatch):
  """Protects the diagnosis of a bad checkpoint: the skip message carries
  the whole first line of the error."""
  ck = Checkpointer(str(tmp_path / "ck"), async_save=False)
  tree = {"w": np.zeros((2, 3), np.float32)}
  ck.save(10, tree, {})
  ck.save(20, tree, {})
  real = ck.manager.restore

  def restore(step, args=None):
    if step == 20:
      raise RuntimeError("x" * 300 + " the end of the sentence")
    return real(step, args=args)
  monkeypatch.setattr(ck.manager, "restore", restore)
  reports = []
  assert ck.restore_latest(tree, report=reports.append)[0] == 10
  assert "the end of the sentence" in reports[0]
  ck.close()


# ---------------------------------------------------------------- case 7
def test_all_corrupt_checkpoints_fail_the_same_every_time(run_copy, capsys):
  """Protects metrics.jsonl when every checkpoint is unreadable: each
  resume fails (exit 1) with the same explanation instead of silently
  restarting from step 0; --force restarts the method from 0, says so
  and records it."""
  ckdir = os.path.join(run_copy, "checkpoints", "adam")
  for root, _, files in os.walk(ckdir):
    for f in files:
      if "state" in root:
        open(os.path.join(root, f), "wb").close()
  rows = read_metrics(run_copy)
  for _ in range(2):
    rc, _, err = _main(["train", "--resume", run_copy, "--no-progress",
                        "--no-plots"], capsys)
    assert rc == 1 and "no usable checkpoint" in err, err
    assert read_metrics(run_copy) == rows
  rc, _, err = _main(["train", "--resume", run_copy, "--force",
                      "--no-progress", "--no-plots"], capsys)
  assert rc == 0 and "restarting it from step 0" in err
  with open(os.path.join(run_copy, runfolder.HISTORY)) as f:
    assert "adam.restart" in f.read()


# ---------------------------------------------------------------- case 8
def test_out_below_a_file_and_amplifier_without_seeds(tmp_path, capsys):
  """Protects the user from tracebacks: --out below a regular file and an
  amplifier file without ``seeds`` (train and amplifier) are one line."""
  f = tmp_path / "file"
  f.write_text("x")
  rc, _, err = _main(RUN + ["--out", str(f / "run")], capsys)
  assert rc == 2 and "is a file" in _error_line(err)
  amp = _amp_file(str(tmp_path / "a.msgpack"), drop=("seeds",))
  rc, _, err = _main(RUN + ["--methods", "neuralgrok-frozen", "--amplifier",
                            amp, "--out", str(tmp_path / "o")], capsys)
  assert rc == 2 and "seeds" in _error_line(err)
  rc, _, err = _main(["amplifier", amp], capsys)
  assert rc == 2 and "seeds" in _error_line(err)


# ---------------------------------------------------------------- case 9
def test_options_that_do_not_apply_are_errors(tmp_path, capsys):
  """Protects the configuration the user believes ran: --amplifier
  without neuralgrok-frozen, --amp-hidden against the amplifier file's
  shape, and --out "" are errors, not silence."""
  amp = _amp_file(str(tmp_path / "a.msgpack"), hidden=(8,))
  out = ["--out", str(tmp_path / "o")]
  rc, _, err = _main(RUN + ["--amplifier", amp] + out, capsys)
  assert rc == 2 and "--amplifier" in _error_line(err)
  rc, _, err = _main(RUN + ["--methods", "neuralgrok-frozen", "--amplifier",
                            amp, "--amp-hidden", "16"] + out, capsys)
  assert rc == 2 and "--amp-hidden" in _error_line(err)
  rc, _, err = _main(RUN + ["--out", ""], capsys)
  assert rc == 2 and "--out" in _error_line(err)
  assert not os.path.exists(str(tmp_path / "o"))


# --------------------------------------------------------------- case 10
def test_minor_cases(tmp_path, run_copy, capsys):
  """Protects: the seed list (no negatives), the --seed-group message, the
  report's naming of an unreadable file, and the rows of a run that
  --force --steps would shorten (refused, nothing changed)."""
  for argv, needle in ((["--seeds", "1,-2"], "--seeds"),
                       (["--seed-group", "0"], "--seed-group")):
    rc, _, err = _main(RUN + argv + ["--out", str(tmp_path / "o")], capsys)
    line = _error_line(err)
    assert rc == 2 and needle in line and "None" not in line
  d = write_run_folder(str(tmp_path / "rep"), ["adam"], [0], [], 10, 10)
  with open(os.path.join(d, "summary.json"), "w") as f:
    f.write("{not json")
  rc, _, err = _main(["report", d, "--no-plots"], capsys)
  assert rc == 2 and "summary.json" in _error_line(err)
  before = folder_listing(run_copy)
  rc, _, err = _main(["train", "--resume", run_copy, "--steps", "20",
                      "--force"], capsys)
  assert rc == 2 and "not shortened" in _error_line(err)
  assert folder_listing(run_copy) == before


def test_finite_divergence_bound():
  """Protects the diverged count: a seed whose training loss explodes to
  a finite 6e7 counts as diverged from that evaluation on."""
  def rows(step, losses, prev=()):
    return [dict(method="adam", seed=s, step=step, diverged_at=-1,
                 batch_loss=l, **{"test/acc": 0.1}) for s, l in
            enumerate(losses)]
  hist = []
  for step, losses in ((10, [2.0, 6e7]), (20, [2.0, 3.0])):
    new = rows(step, losses)
    hist += new
    DivergenceBound()(Chunk("adam", step, 20, 10, None, new, hist, 0.0))
  assert [r["diverged_at"] for r in hist] == [-1, 10, -1, 10]
  spec = make_spec(dict(task="a+b", p=11), "adam", 2, 20, 10)
  assert summarize(hist, spec)["methods"]["adam"]["num_diverged"] == 1
