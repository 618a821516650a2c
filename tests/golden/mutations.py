"""Checks that the golden tests fail when what they cover is broken.

For each mutation: copy the repository (without .git) to a temporary folder,
apply the one-line change to the library there, run the golden tests on the
copy and print which pass and which fail.  Nothing in the repository is
changed.  Run from the repository root (minutes per mutation on a CPU):

  python tests/golden/mutations.py [NAME ...]

Observed: each mutation makes exactly the tests named in its comment fail
(every other golden test passes).
"""
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
TESTS = ["tests/test_golden_public.py", "tests/test_golden.py"]
# name -> [(file, old text, new text)]; the comment: the tests that failed
MUTATIONS = {
    # test_trace[clip_], test_trace[rescale_] (tests/test_golden.py stays
    # green: at d 16 the clip never acts)
    "no_clip": [("ngrok_jax/_src/optim/optimizers.py",
                 "      clip_by_global_norm(clip_norm),\n",
                 "      optax.identity(),\n")],
    # test_initialisation_matches_reference
    "init_not_passed": [("ngrok_jax/_src/training/methods.py",
                         "cfg.depth, init_style=cfg.init)", "cfg.depth)")],
    # test_trace[rescale_]
    "rescale_unnormalised": [("ngrok_jax/_src/optim/transforms.py",
                              "safe_normalize(g, c).astype(g.dtype)",
                              "(c * g).astype(g.dtype)")],
    # test_trace[rescale_]
    "rescale_c_dropped": [("ngrok_jax/_src/optim/registry.py",
                           'normalize_gradients(hp["c"])',
                           "normalize_gradients(1.0)")],
    # test_trace[coupled_], test_evaluation
    "adam_decoupled": [("ngrok_jax/_src/optim/registry.py",
                        "           \"baseline)\",\n"
                        "           color=\"#ff7f0e\",\n"
                        "           transform=lambda cfg, hp, parts: "
                        "_extra(optax.identity()),\n"
                        "           grid=_grid(_COUPLED_WD)),\n",
                        "           \"baseline)\",\n"
                        "           color=\"#ff7f0e\",\n"
                        "           transform=lambda cfg, hp, parts: "
                        "_extra(optax.identity()),\n"
                        "           grid=_grid(_COUPLED_WD), "
                        "coupled_decay=False),\n")],
    # test_epoch_batching_matches_dataloader[clip_, coupled_]
    "no_short_batch": [("ngrok_jax/_src/training/seed_step.py",
                        "    per_epoch = -(-n // b)\n",
                        "    per_epoch = max(n // b, 1)\n"),
                       ("ngrok_jax/_src/training/seed_step.py",
                        "jnp.zeros((per_epoch * b - n,), perm.dtype)",
                        "jnp.zeros((max(per_epoch * b - n, 0),), perm.dtype)")],
    # test_epoch_batching_matches_dataloader[clip_, coupled_]
    "no_reshuffle": [("ngrok_jax/_src/training/seed_step.py",
                      "jax.random.fold_in(key, epoch), n)", "key, n)")],
    # test_epoch_batching_matches_dataloader[coupled_]
    "train_steps_other_batches": [
        ("ngrok_jax/_src/training/seed_step.py",
         "  x, y, w = batch_of(cfg, s.key, train_idx, step, data)",
         "  x, y, w = batch_of(cfg, s.key, train_idx, step + 1, data)")],
    # test_evaluation
    "eval_acc_broken": [("ngrok_jax/_src/training/seed_step.py",
                         'out[f"{name}/acc"] = accuracy(logits, labels)',
                         'out[f"{name}/acc"] = accuracy(logits[::-1], labels)')],
    # test_evaluation
    "eval_loss_broken": [("ngrok_jax/_src/training/seed_step.py",
                          'out[f"{name}/loss"] = ce(logits, labels)',
                          'out[f"{name}/loss"] = ce(logits[::-1], labels)')],
}


def run(name, tmp):
  dst = os.path.join(tmp, name)
  shutil.copytree(ROOT, dst, ignore=shutil.ignore_patterns(
      ".git", "__pycache__", "*.egg-info", ".venv*", "runs"))
  for path, old, new in MUTATIONS[name]:
    p = os.path.join(dst, path)
    with open(p) as f:
      text = f.read()
    if text.count(old) != 1:
      print(f"mutations.py: {name}: {path} no longer has {old!r}",
            file=sys.stderr)
      sys.exit(2)
    with open(p, "w") as f:
      f.write(text.replace(old, new))
  env = dict(os.environ, PYTHONPATH=dst, JAX_PLATFORMS="cpu")
  where = subprocess.run([sys.executable, "-c", "import ngrok_jax; print("
                          "ngrok_jax.__file__)"], cwd=dst, env=env,
                         capture_output=True, text=True).stdout
  assert where.startswith(dst), where  # the mutated copy is imported
  r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p",
                      "no:cacheprovider"] + TESTS, cwd=dst, env=env,
                     capture_output=True, text=True)
  print(f"== {name}: pytest exit status {r.returncode}", flush=True)
  for line in r.stdout.splitlines():
    if line.startswith(("FAILED", "ERROR")):
      print("  " + line.split(" - ")[0], flush=True)
  shutil.rmtree(dst, ignore_errors=True)


def main(names):
  unknown = set(names) - set(MUTATIONS)
  if unknown:
    print(f"mutations.py: unknown {sorted(unknown)}; valid: "
          f"{', '.join(MUTATIONS)}", file=sys.stderr)
    sys.exit(2)
  with tempfile.TemporaryDirectory() as tmp:
    for name in names or list(MUTATIONS):
      run(name, tmp)


if __name__ == "__main__":
  main(sys.argv[1:])
