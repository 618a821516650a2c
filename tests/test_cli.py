"""The ngrok-jax command line: every method end to end at a tiny size, the
run folder, report on two folders, amplifier show/export, transfer, and bad
options (exit 2, one line, no traceback), with hypothesis on validation."""
import contextlib
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ngrok_jax._src.cli import cli, flags, train_args
from ngrok_jax._src.storage.ampfile import load_amplifier
from ngrok_jax._src.training.config import TrainConfig
from ngrok_jax._src.core.metrics import steps_to_threshold
from ngrok_jax._src.analysis.results import read_metrics
from ngrok_jax._src.storage.spec import RunSpec, make_spec
from ngrok_jax._src.training.train import METHODS
from run_folders import TINY_AMP_FLAGS, TINY_MODEL_FLAGS, cli_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = TINY_MODEL_FLAGS + ["--seeds", "2", "--steps", "20", "--eval-every",
                           "10", "--no-progress"]
#: The options only some methods read (the amplifier's, GrokFast-MA's
#: window), for a run with those methods.
METHOD_FLAGS = TINY_AMP_FLAGS + ["--window", "3"]
BASE_METHODS = [m for m in METHODS if m != "neuralgrok-frozen"]


_main = cli_main


@pytest.fixture(scope="module")
def all_methods_run(tmp_path_factory):
  """(folder, stdout, stderr) of a tiny run of every base method."""
  a = str(tmp_path_factory.mktemp("cli") / "all")
  out, err = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    rc = cli.main(["train"] + TINY + METHOD_FLAGS + [
        "--methods", ",".join(BASE_METHODS), "--out", a])
  assert rc == 0, err.getvalue()[-3000:]
  return a, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def runs(all_methods_run):
  """Two tiny run folders: every base method, then neuralgrok-frozen with
  the first run's amplifier (transfer), on another task."""
  a = all_methods_run[0]
  b = os.path.join(os.path.dirname(a), "frozen")
  assert cli.main(["train"] + TINY + ["--task", "a-b", "--methods",
                                      "neuralgrok-frozen,adam",
                                      "--amplifier", a, "--no-plots",
                                      "--out", b]) == 0
  return a, b


def test_every_method_end_to_end_and_run_folder(runs):
  a, b = runs
  for name in ("config.json", "metrics.jsonl", "summary.json",
               "amplifier.msgpack", "amplifier.json"):
    assert os.path.isfile(os.path.join(a, name)), name
  for png in ("accuracy", "loss", "age", "weights", "amplifier"):
    assert os.path.getsize(os.path.join(a, "plots", png + ".png")) > 1000
  config = json.load(open(os.path.join(a, "config.json")))
  assert config["methods"] == BASE_METHODS
  assert config["configs"]["neuralgrok"]["p"] == 11
  rows = read_metrics(a)
  assert len(rows) == len(BASE_METHODS) * 2 * 2  # methods x seeds x evals
  keys = {"method", "seed", "step", "train/acc", "test/acc", "train/loss",
          "test/loss", "outer_loss", "grad/age", "grad/age_transformed",
          "weights/norm", "weights/entropy", "grad/norm", "diverged_at"}
  for r in rows:
    assert keys <= set(r), keys - set(r)
  ng = [r for r in rows if r["method"] == "neuralgrok"]
  assert all(r["outer_loss"] is not None for r in ng)
  assert all(r["outer_loss"] is None for r in rows if r["method"] == "adam")
  # the frozen transfer run used the saved amplifier's shape
  fz = json.load(open(os.path.join(b, "config.json")))
  assert fz["configs"]["neuralgrok-frozen"]["amp_hidden"] == [8, 8]
  assert fz["configs"]["neuralgrok-frozen"]["task"] == "a-b"
  assert len(read_metrics(b)) == 2 * 2 * 2


def test_summary_agrees_with_metrics_file(runs):
  for d in runs:
    rows = read_metrics(d)
    summary = json.load(open(os.path.join(d, "summary.json")))
    for m, per in summary["methods"].items():
      assert per["complete"]
      for i, seed in enumerate(per["seeds"]):
        sel = sorted((r for r in rows if r["method"] == m and
                      r["seed"] == seed), key=lambda r: r["step"])
        steps = [r["step"] for r in sel]
        acc = [np.nan if r["test/acc"] is None else r["test/acc"]
               for r in sel]
        for t in (95, 99):
          assert per[f"steps_to_{t}"][i] == steps_to_threshold(
              steps, acc, t / 100)
        assert per["final_test_acc"][i] == pytest.approx(acc[-1])
        assert per["diverged_at"][i] is None
      assert per["t95"]["n"] == len(per["seeds"])


def test_report_two_run_folders(runs, capsys, tmp_path):
  png = str(tmp_path / "cmp.png")
  md = str(tmp_path / "t.md")
  rc, out, err = _main(["report", *runs, "--compare", png, "--out", md],
                       capsys)
  assert rc == 0, err
  lines = out.strip().splitlines()
  assert lines[0].startswith("| run | method | 95% median")
  body = lines[2:]
  assert len(body) == len(BASE_METHODS) + 2
  assert any(l.startswith("| all | neuralgrok |") for l in body)
  assert any(l.startswith("| frozen | neuralgrok-frozen |") for l in body)
  assert all("never" in l or l.count("/") >= 2 for l in body)
  assert os.path.getsize(png) > 1000 and open(md).read().strip() == out.strip()


def test_amplifier_show_and_export(runs, capsys, tmp_path):
  a, _ = runs
  npz, mp = str(tmp_path / "a.npz"), str(tmp_path / "a.msgpack")
  rc, out, err = _main(["amplifier", a, "--seed-index", "1", "--export", npz,
                        "--plot", str(tmp_path / "a.png")], capsys)
  assert rc == 0, err
  assert "amplifier 1-8-8-1" in out and "| g | score f(g) |" in out
  z = np.load(npz)
  assert any("kernel_0" in k for k in z.files)
  rc, _, err = _main(["amplifier", a, "--export", mp], capsys)
  assert rc == 0, err
  params, meta = load_amplifier(mp)
  assert meta["hidden"] == [8, 8] and len(meta["seeds"]) == 1
  rc, _, err = _main(["amplifier", a, "--seed-index", "7"], capsys)
  assert rc == 2 and len(err.strip().splitlines()) == 1


def test_resume_of_finished_run_and_config_mismatch(runs, capsys):
  a, _ = runs
  rc, _, err = _main(["train", "--resume", a, "--steps", "40"], capsys)
  assert rc == 2 and "steps" in err and "--force" in err
  assert len(err.strip().splitlines()) == 1
  rc, _, err = _main(["train", "--resume", a, "--lr", "0.01"], capsys)
  assert rc == 2 and "configs.neuralgrok.lr" in err
  rc, _, err = _main(["train", "--resume", a, "--methods", "adam",
                      "--no-plots"], capsys)
  assert rc == 2 and "methods" in err


def test_resume_of_a_finished_run_trains_nothing_and_changes_nothing(runs,
                                                                     capsys):
  _, b = runs
  rows = read_metrics(b)
  with open(os.path.join(b, "summary.json")) as f:
    before = json.load(f)
  ckpts = sorted(os.listdir(os.path.join(b, "checkpoints", "adam")))
  seen = []
  rc, _, err = _main(["train", "--resume", b, "--no-plots"], capsys,
                     hooks=[seen.append])
  assert rc == 0, err
  assert seen == []  # no chunk was trained
  assert read_metrics(b) == rows
  with open(os.path.join(b, "summary.json")) as f:
    after = json.load(f)
  for m in before["methods"]:
    for key in ("steps_to_95", "steps_to_99", "complete", "steps_run"):
      assert after["methods"][m].get(key) == before["methods"][m].get(key)
  assert sorted(os.listdir(os.path.join(b, "checkpoints", "adam"))) == ckpts


BAD = [
    (["--methods", "sgd"], "unknown method 'sgd'"),
    (["--methods", "adam,adam"], "twice"),
    (["--task", "a^b"], "unknown task 'a^b'"),
    (["--preset", "huge"], "unknown preset"),
    (["--steps", "-5"], "steps must be a positive integer, got -5"),
    (["--steps", "ten"], "--steps must be an integer"),
    (["--eval-every", "50"], "eval_every (50) must be <= steps (20)"),
    (["--seeds", "0"], "for the single seed 0 write --seed-list 0"),
    (["--seeds", "1,1"], "distinct"),
    (["--seeds", "x"], "--seeds takes a count (--seeds 4: seeds 0..3)"),
    (["--seeds", "5..3"], "an inclusive range (--seeds 3..5 or 3-5)"),
    (["--seed-list", "a"], "--seed-list takes distinct seeds"),
    (["--seeds", "2", "--seed-list", "0"], "not allowed with argument"),
    # an option no chosen method reads (the records' options)
    (["--methods", "adam", "--amp-hidden", "8,8"],
     "--amp-hidden applies only to neuralgrok, neuralgrok-frozen; the "
     "chosen methods (adam) do not read it"),
    (["--methods", "adam,adamw", "--window", "3"],
     "--window applies only to grokfast-ma"),
    (["--methods", "adam", "--sweep", "c=1,2"],
     "--sweep c applies only to rescale, neuralgrok"),
    (["--methods", "rescale", "--meta-lr", "1e-3"],
     "--meta-lr applies only to neuralgrok"),
    (["--checkpoint-every", "15"], "multiple of eval_every"),
    (["--lr", "-1"], "lr"),
    (["--lr", "nan"], "hyperparameter lr must be > 0, got nan"),
    (["--lr", "fast"], "--lr must be a number, got 'fast'"),
    (["--c", "0"], "c must be > 0"),
    (["--alpha", "1.5"], "alpha"),
    (["--heads", "3"], "heads (3) must divide dim (16)"),
    (["--amp-hidden", "8,0"], "amp_hidden must be positive integers"),
    (["--amp-hidden", "8,x"], "--amp-hidden must be comma-separated"),
    (["--lookahead", "adam"], "unknown lookahead 'adam'; valid: sgd, inner"),
    (["--sweep", "foo=1,2"], "unknown hyperparameter 'foo'"),
    (["--sweep", "c"], "--sweep must be NAME=v1,v2"),
    (["--train-on-outer", "maybe"], "--train-on-outer must be yes or no"),
    (["--lookahead", "inner", "--methods", "neuralgrok"],
     "needs eps_root > 0"),
    (["--stop-acc", "2"], "stop_acc must be a number in [0, 1]"),
    (["--keep-checkpoints", "0"], "keep_checkpoints must be a positive"),
    (["--sweep", "c=1,x"], "numbers"),
    (["--methods", "neuralgrok-frozen"], "needs a trained amplifier"),
    (["--amplifier", "/nonexistent", "--methods", "neuralgrok-frozen"],
     "no amplifier"),
    (["--bogus"], "unrecognized arguments"),
    (["--devices", "0"], "devices must be a positive integer, got 0"),
    (["--amp-chunk", "-5"], "amp_chunk must be None or a positive integer"),
    (["--amp-dtype", "float16"], "unknown amp_dtype 'float16'; valid: "
     "float32, bfloat16"),
    (["--amp-method", "mlp"], "unknown amp_method 'mlp'; valid: pwl, dense"),
    (["--amp-chunk", "64"], "apply only to amp_method='dense' "
     "(--amp-method dense)"),
    (["--amp-dtype", "bfloat16", "--amp-method", "pwl"],
     "apply only to amp_method='dense'"),
]


@pytest.mark.parametrize("extra,needle", BAD)
def test_bad_options_exit_2_with_one_line(extra, needle, capsys, tmp_path):
  rc, out, err = _main(["train"] + TINY + ["--out", str(tmp_path / "r")] +
                       extra, capsys)
  assert rc == 2, (rc, err)
  assert needle in err, err
  assert len(err.strip().splitlines()) == 1, err
  assert "Traceback" not in err
  assert not os.path.exists(tmp_path / "r" / "metrics.jsonl")


def test_bad_command_and_missing_run_folder(capsys, tmp_path):
  for argv, needle in ((["fly"], "invalid choice"), ([], "required"),
                       (["report", str(tmp_path)], "not a run folder"),
                       (["train", "--resume", str(tmp_path / "none")],
                        "not a run folder"),
                       (["train", "--resume", str(tmp_path), "--preset",
                         "quick"], "cannot be combined")):
    rc, _, err = _main(argv, capsys)
    assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1


def test_subprocess_bad_option_has_no_traceback():
  proc = subprocess.run([sys.executable, "-m", "ngrok_jax", "train",
                         "--methods", "nope"], cwd=ROOT, capture_output=True,
                        text=True, timeout=120,
                        env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert proc.returncode == 2
  assert proc.stderr.strip().count("\n") == 0 and "nope" in proc.stderr
  help_ = subprocess.run([sys.executable, "-m", "ngrok_jax", "train",
                          "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
  assert help_.returncode == 0
  for opt in ("--task", "--p", "--methods", "--seeds", "--steps",
              "--eval-every", "--out", "--preset", "--checkpoint-every",
              "--resume", "--force", "--amplifier"):
    assert opt in help_.stdout


def test_every_preset_resolves():
  from ngrok_jax._src.training.presets import PRESETS
  for name in PRESETS:
    args = cli.build_parser().parse_args(["train", "--preset", name])
    spec = train_args.spec_from_args(args)
    assert spec.steps == PRESETS[name]["steps"]
    if name.startswith(("paper-", "early-")):
      hp = {m: c.hparams() for m, c in spec.configs.items()}
      # the reference's baseline is Adam with NeuralGrok's weight decay
      assert hp["neuralgrok"]["wd"] == hp["adam"]["wd"] == 1e-3
      assert hp["rescale"]["wd"] == 1e-3
      assert hp["adamw"]["wd"] == 1.0
      assert hp["grokfast-ema"]["wd"] == 0.005
      assert hp["grokfast-ma"]["wd"] == 0.01
      # only NeuralGrok and its rescaling ablation are clipped
      assert hp["neuralgrok"]["clip"] == hp["rescale"]["clip"] == 1.0
      for m in ("adam", "adamw", "grokfast-ema", "grokfast-ma"):
        assert hp[m]["clip"] == float("inf"), (name, m)
      assert hp["neuralgrok"]["c"] == (0.2 if name.startswith("paper-")
                                       else 1.0)
      assert spec.eval_every == 100
  final = {"paper-add": ((128, 128), 4, 2), "paper-sub": ((128, 128), 4, 2),
           "paper-mul": ((128, 128), 4, 2), "paper-sqsub": ((128, 128), 4, 2),
           "paper-poly": ((1152,), 1, 4), "early-add": ((128, 128), 3, 2),
           "early-sub": ((576,), 3, 2), "early-mul": ((320,), 3, 2),
           "early-sqsub": ((256,), 4, 2), "early-poly": ((1152,), 2, 4)}
  for name, (amp, T, depth) in final.items():
    spec = train_args.spec_from_args(cli.build_parser().parse_args(
        ["train", "--preset", name]))
    ng = spec.configs["neuralgrok"]
    assert (ng.amp_hidden, ng.meta_every, ng.depth) == (amp, T, depth), name


#: A valid non-default value of every TrainConfig field, set together through
#: the command line (method: via --methods).  A field missing here fails
#: test_every_config_field_round_trips_through_the_command_line.
NON_DEFAULT = dict(
    task="a-b", p=11, method="rescale", fractions=(0.5, 0.1, 0.4),
    split_seed=3, depth=1, dim=16, heads=2, batch_size=32, warmup_steps=5,
    init="flax", batching="iid", train_on_outer=False, amp_hidden=(8, 4),
    amp_method="dense", amp_dtype="bfloat16", amp_chunk=64, meta_every=5,
    lookahead="inner", meta_placement="before", window=7, lr=2e-3, wd=0.01,
    b1=0.8, b2=0.95, eps=1e-7, eps_root=1e-16, clip=0.5, c=0.7, alpha=0.9,
    lamb=3.0, meta_lr=2e-4, meta_wd=0.02, lookahead_lr=5e-3,
    loss="stablemax", fix_weight_norm=40.0, lookahead_steps=3,
    amp_inputs="rich", meta_schedule="cosine", meta_schedule_steps=100,
    rule="runs/my_rule")


def _cli_value(v):
  if isinstance(v, bool):
    return "yes" if v else "no"
  if isinstance(v, tuple):
    return ",".join(repr(x) for x in v)
  return repr(v) if isinstance(v, float) else str(v)


def test_every_config_field_round_trips_through_the_command_line():
  """Every TrainConfig field has a flag of `ngrok-jax train`; setting all
  of them to non-default values gives exactly that configuration."""
  import dataclasses
  # meta_axis_name (set by ngrok_jax.cross_task, meaningless alone) is the
  # one field without a flag
  hidden = {f.name for f in dataclasses.fields(TrainConfig)
            if not f.metadata["cli"]}
  assert hidden == {"meta_axis_name"}
  fields = [f for f in dataclasses.fields(TrainConfig)
            if f.name not in hidden]
  assert set(NON_DEFAULT) == {f.name for f in fields}, (
      "every TrainConfig field needs a value in NON_DEFAULT (and a flag)")
  parser = cli.build_parser()
  # one flag per field (method: --methods), and no other config flag
  cfg = {k[4:] for k in vars(parser.parse_args(["train"]))
         if k.startswith("cfg_")}
  assert cfg == {f.name for f in fields} - {"method"}
  argv = ["train"]
  for f in fields:
    assert NON_DEFAULT[f.name] != f.default, f.name
    argv += [cli.config_flag(f), _cli_value(NON_DEFAULT[f.name])]
  # exit 2 if a flag is missing
  spec = train_args.spec_from_args(parser.parse_args(argv))
  assert spec.configs == {"rescale": TrainConfig(**NON_DEFAULT)}


def test_lookahead_inner_and_dense_amplifier_run_end_to_end(capsys, tmp_path):
  """--lookahead inner (which differentiates through Adam) with --eps-root,
  and --amp-method/--amp-chunk/--amp-dtype (and --devices 1, no sharding),
  from the command line, in-process, to the run folder: one run (one
  compiled program) for all of them."""
  out = str(tmp_path / "inner")
  rc, stdout, err = _main(
      ["train", "--task", "a+b", "--p", "11", "--dim", "16", "--heads", "2",
       "--depth", "1", "--amp-hidden", "8,8", "--batch-size", "32",
       "--meta-every", "2", "--methods", "neuralgrok", "--seeds", "2",
       "--steps", "4", "--eval-every", "2", "--lookahead", "inner",
       "--eps-root", "1e-16", "--amp-method", "dense", "--amp-chunk", "64",
       "--amp-dtype", "bfloat16", "--devices", "1", "--no-progress",
       "--no-plots", "--out", out],
      capsys)
  assert rc == 0, err
  cfg = json.load(open(os.path.join(out, "config.json")))
  ng = cfg["configs"]["neuralgrok"]
  assert (ng["lookahead"], ng["eps_root"]) == ("inner", 1e-16)
  assert (ng["amp_method"], ng["amp_chunk"], ng["amp_dtype"]) == (
      "dense", 64, "bfloat16")
  rows = read_metrics(out)
  assert len(rows) == 4  # 2 seeds x 2 evaluations
  assert sorted(r["step"] for r in rows) == [2, 2, 4, 4]
  assert all(np.isfinite(r["train/loss"]) for r in rows)
  assert all(r["outer_loss"] is not None for r in rows if r["step"] == 4)
  assert "| inner | neuralgrok |" in stdout


def test_sweep_becomes_per_seed_values():
  args = cli.build_parser().parse_args(
      ["train", "--seeds", "2", "--sweep", "c=0.5,1,2", "--methods",
       "rescale"])
  spec = train_args.spec_from_args(args)
  assert spec.seeds == tuple(range(6))
  assert spec.hparams == {"c": (0.5, 0.5, 1.0, 1.0, 2.0, 2.0)}
  # listed seeds: repeated per value, offset to stay distinct
  args = cli.build_parser().parse_args(
      ["train", "--seeds", "3,5", "--sweep", "c=1,2", "--sweep", "wd=0,0.1",
       "--methods", "rescale"])
  spec = train_args.spec_from_args(args)
  assert spec.seeds == (3, 5, 9, 11)
  assert spec.hparams == {"c": (1.0, 1.0, 2.0, 2.0),
                          "wd": (0.0, 0.0, 0.1, 0.1)}
  for bad, msg in ((["--sweep", "c=1,2", "--sweep", "wd=0"], "same number"),
                   (["--sweep", "c=1", "--sweep", "c=2"], "twice")):
    with pytest.raises(ValueError, match=msg):
      train_args.spec_from_args(cli.build_parser().parse_args(
          ["train", "--methods", "rescale"] + bad))


# ------------------------------------------------------- property-based
_int_text = st.one_of(st.integers(-5, 300).map(str), st.sampled_from(
    ["", "x", "1.5", "1e3", "0x10", " 7"]))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=_int_text, ev=_int_text, ck=_int_text,
       seeds=st.one_of(_int_text, st.sampled_from(["0,1", "1,1", "3,2,9"])),
       lr=st.one_of(st.floats(allow_nan=True).map(repr),
                    st.sampled_from(["inf", "-0", "1e-3"])))
def test_cli_validation_property(steps, ev, ck, seeds, lr):
  """Any values: either a valid spec or exit 2 / UsageError / ValueError,
  never another exception; a valid spec satisfies every invariant."""
  argv = ["train", "--steps", steps, "--eval-every", ev,
          "--checkpoint-every", ck, "--seeds", seeds, "--lr", lr]
  parser = cli.build_parser()
  try:
    args = parser.parse_args(argv)
  except SystemExit as e:
    assert e.code == 2
    return
  try:
    spec = train_args.spec_from_args(args)
  except (flags.UsageError, ValueError) as e:
    assert str(e) and "\n" not in str(e).strip()
    return
  assert spec.steps >= 1 and 1 <= spec.eval_every <= spec.steps
  assert spec.checkpoint_every is None or (
      spec.checkpoint_every % spec.eval_every == 0)
  assert len(set(spec.seeds)) == len(spec.seeds) >= 1
  for cfg in spec.configs.values():
    assert np.isfinite(cfg.lr) and cfg.lr > 0


@settings(max_examples=80, deadline=None)
@given(steps=st.integers(-3, 50), ev=st.integers(-3, 60),
       ck=st.one_of(st.none(), st.integers(-3, 100)),
       seeds=st.one_of(st.integers(-2, 5),
                       st.lists(st.integers(0, 5), max_size=4)),
       methods=st.lists(st.sampled_from(list(METHODS) + ["sgd"]), max_size=3),
       keep=st.integers(-1, 4),
       hp=st.dictionaries(st.sampled_from(["c", "lr", "alpha", "wd", "bad"]),
                          st.floats(-2, 2), max_size=2))
def test_make_spec_validation_property(steps, ev, ck, seeds, methods, keep,
                                       hp):
  try:
    spec = make_spec(dict(task="a+b", p=11, dim=16, heads=2, depth=1),
                            methods, seeds, steps, ev, checkpoint_every=ck,
                            keep_checkpoints=keep, hparams=hp)
  except ValueError as e:
    assert str(e)
    return
  assert 1 <= spec.eval_every <= spec.steps and spec.keep_checkpoints >= 1
  assert spec.methods == list(methods) and "neuralgrok-frozen" not in methods
  assert all(m in METHODS for m in methods) and methods
  assert not spec.checkpoint_every or spec.checkpoint_every % ev == 0
  assert len(set(spec.seeds)) == len(spec.seeds) >= 1
  for k, v in spec.hparams.items():
    assert k != "bad" and len(v) == len(spec.seeds)
  assert RunSpec.from_dict(spec.to_dict()) == spec
  assert spec.diff(RunSpec.from_dict(spec.to_dict())) == []


@pytest.mark.slow
def test_quick_preset_main_job(tmp_path):
  """The README main job: NeuralGrok, the rescaling ablation and Adam at
  the reference's wd 1e-3; NeuralGrok reaches 95% test accuracy in every
  seed; the output says what each method is; the accuracy figure is
  written (about 8 minutes on a loaded 2-core CPU)."""
  out = str(tmp_path / "quick")
  proc = subprocess.run([sys.executable, "-m", "ngrok_jax", "train",
                         "--preset", "quick", "--methods",
                         "neuralgrok,rescale,adam", "--seeds", "4", "--out",
                         out, "--no-progress"],
                        cwd=ROOT, capture_output=True, text=True,
                        timeout=1800)
  assert proc.returncode == 0, proc.stderr[-3000:]
  summary = json.load(open(os.path.join(out, "summary.json")))
  assert summary["methods"]["neuralgrok"]["t95"]["success_rate"] == 1.0
  assert list(summary["methods"]) == ["neuralgrok", "rescale", "adam"]
  for m in ("neuralgrok", "rescale", "adam"):
    assert f"- {m}: " in proc.stdout and "coupled wd 0.001" in proc.stdout
  assert os.path.isfile(os.path.join(out, "plots", "accuracy.png"))


def test_train_prints_the_comparison_table(all_methods_run):
  """The every-method run's own output (no second training run): the
  table, a line per method saying what it is and its lr, wd and clip, and
  each method's compilation as a stage with its time."""
  from ngrok_jax._src.optim.registry import get_method
  out, stdout, err = all_methods_run
  lines = [l for l in stdout.splitlines() if l.startswith("| all |")]
  assert [l.split("|")[2].strip() for l in lines] == BASE_METHODS
  assert all(l.count("/2") == 2 for l in lines)  # 95% and 99% successes
  assert f"run folder {out}" in err
  said = [l for l in stdout.splitlines() if l.startswith("- ")]
  assert [l.split(":")[0][2:] for l in said] == BASE_METHODS
  for m, l in zip(BASE_METHODS, said):
    assert get_method(m).summary in l and "; here lr 0.003, " in l, l
  assert "- adam: " in stdout and "coupled wd 0.001, unclipped" in stdout
  assert "- adamw: " in stdout and "decoupled wd 1, unclipped" in stdout
  for m in BASE_METHODS:
    start = err.index(f"{m}: compiling the training step...")
    assert err.index(f"{m}: compiled in ", start) > start, m


def test_version_help_by_concern_with_the_presets_values_and_seed_forms(
    capsys):
  """--version; train --help in groups by concern, each configuration flag
  showing the value the chosen preset uses where it is not the library's
  default, the method-specific ones naming their methods; the seed forms."""
  import ngrok_jax
  rc, out, _ = _main(["--version"], capsys)
  assert rc == 0 and out.strip() == f"ngrok-jax {ngrok_jax.__version__}"
  rc, quick, _ = _main(["train", "--help"], capsys)
  assert rc == 0
  flat = " ".join(quick.split())
  for group in ("what runs:", "run folder, checkpoints and resume:",
                "task and data", "model (default", "optimizer (every method)",
                "method-specific configuration", "devices and speed",
                "output and experiment trackers:", "several processes"):
    assert group in quick, group
  assert "(quick: 0.003; library default: 0.001)" in flat      # --lr
  assert "(quick: 47; library default: 97)" in flat            # --p
  assert "quick's, neuralgrok,rescale,adam" in flat            # --methods
  assert "(quick: 32,32; library default: 128,128) [neuralgrok, " \
      "neuralgrok-" in flat
  rc, paper, _ = _main(["train", "--preset", "paper-add", "--help"], capsys)
  flat = " ".join(paper.split())
  assert "modulus p (default: 97)" in flat and "learning rate (default: " \
      "0.001)" in flat and "(paper-add: 128,128) " not in flat
  assert "0.001; 1 for adamw; 0.005 for grokfast-ema" in flat  # --wd
  parse = cli.build_parser().parse_args
  for argv, seeds in ((["--seeds", "4"], 4), (["--seeds", "0,"], [0]),
                      (["--seeds", "3..5"], [3, 4, 5]),
                      (["--seeds", "3-5"], [3, 4, 5]),
                      (["--seeds", "0,2..3"], [0, 2, 3]),
                      (["--seed-list", "0"], [0]),
                      (["--seed-list", "7,1"], [7, 1])):
    assert parse(["train"] + argv).seeds == seeds, argv


@pytest.mark.slow  # a CLI training run: about 90 s on a loaded 2-core CPU
def test_learned_rule_method_trains_through_the_cli(capsys, tmp_path):
  """--methods learned-rule: the shipped rule, frozen, at the CLI's learning
  rate and AdamW's decoupled weight decay; it lowers the training loss."""
  out = str(tmp_path / "r")
  rc, _, err = _main(["train"] + TINY + ["--methods", "learned-rule",
                                         "--steps", "40", "--lr", "0.01",
                                         "--no-plots", "--out", out], capsys)
  assert rc == 0, err
  config = json.load(open(os.path.join(out, "config.json")))
  assert config["methods"] == ["learned-rule"]
  rows = read_metrics(out)
  assert len(rows) == 2 * 4  # seeds x evals
  for seed in (0, 1):
    loss = [r["train/loss"] for r in rows if r["seed"] == seed]
    assert np.isfinite(loss).all() and loss[-1] < loss[0], loss
