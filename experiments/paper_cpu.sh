#!/usr/bin/env bash
# Paper-size reproduction on a CPU (RESULTS.md, "Paper size"): the authors'
# final recipe (presets paper-*), 3 seeds, evaluation every 100 steps, a
# 5,000-step budget, a method stopped once every seed has held >= 99% test
# accuracy for 5 evaluations (--stop-after 5), checkpoints every 500 steps.
# Each task: one folder with the preset's methods (NeuralGrok, rescaling,
# Adam wd 1e-3, AdamW wd 1, GrokFast-EMA/MA) and one with plain Adam (wd 0).
# Re-running the script resumes unfinished folders (--resume).
#
#   bash experiments/paper_cpu.sh add mul sub sqsub    # tasks in this order
#   OUT=runs/paper STEPS=5000 SEEDS=3 bash experiments/paper_cpu.sh add
#   PARTS=main bash experiments/paper_cpu.sh mul       # without plain Adam
#   STEPS=600 bash experiments/paper_cpu.sh poly       # a*c+b*d-e, see below
set -euo pipefail
OUT=${OUT:-runs/paper}
STEPS=${STEPS:-5000}
SEEDS=${SEEDS:-3}
STOP=${STOP:-5}
PARTS=${PARTS:-main wd0}  # "main": the preset's methods; "wd0": plain Adam
mkdir -p "$OUT"
run() {  # run DIR ARGS...: train into DIR, or resume it if it exists
  local dir=$1; shift
  if [ -f "$dir/summary.json" ] && python3 -c "import json,sys; s=json.load(open('$dir/summary.json')); sys.exit(0 if all(m['complete'] for m in s['methods'].values()) else 1)"; then
    echo "done: $dir"; return 0
  fi
  if [ -f "$dir/config.json" ]; then
    python3 -m ngrok_jax train --resume "$dir" --no-progress
  else
    python3 -m ngrok_jax train "$@" --seeds "$SEEDS" --steps "$STEPS" \
      --eval-every 100 --checkpoint-every 500 --stop-after "$STOP" \
      --out "$dir" --no-progress
  fi
}
for task in "$@"; do
  if [ "$task" = poly ]; then
    # a*c+b*d-e mod 7, depth 4, amplifier 1-1152-1, T=1: the costliest;
    # NeuralGrok, rescaling and Adam with the same weight decay only.
    run "$OUT/poly" --preset paper-poly --methods neuralgrok,rescale,adam
    continue
  fi
  case " $PARTS " in *" main "*) run "$OUT/$task" --preset "paper-$task" ;; esac
  case " $PARTS " in *" wd0 "*)
    run "$OUT/$task-adam-wd0" --preset "paper-$task" --methods adam --wd 0 ;;
  esac
done
