#!/usr/bin/env bash
# The trace recipe at the default pair's scale on a GPU, its controls and the edits, in one command.
#
# Here, once:   mkdir -p data && cp -r /usr/share/datasets/fashion-mnist data/     (data/ is git-ignored; 30 MB)
# On a device:  run(command="bash benchmarks/gpu_trace.sh", carry=["data"], timeout_s=580)
# Anywhere:     EPOCHS=90 COOLDOWN=10 LEVERS=views OUT=runs/gpu bash benchmarks/gpu_trace.sh
# (the last COOLDOWN of the EPOCHS decay the learning rate to 0: on CPU, 6 such epochs took the trace's
# calibration AUC from 0.866 to 0.906 at 5,000 members and from 0.888 to 0.933 at 25,000. LEVERS=views trains on
# 4 edited views of each member and external: at 5,000 members it needed 58 epochs for the trace the base has at 33,
# and bought 3.6 points of task accuracy (the passive control as much) and +0.11 AUC on resize224 / screenshot;
# RESULTS.md section 5)
#
# Writes $OUT/trace_controls.json (active, passive, untrained, fresh_head, active_edited: the trace alone,
# the paper's protocol, 10,000 scored members vs the 10,000 test images) and $OUT/log. The backbones
# train with checkpoints under $OUT/runs: the same command resumes them if it was cut short.
set -euo pipefail
cd "$(dirname "$0")/.."
export AMINT_DATA_DIR="${AMINT_DATA_DIR:-$PWD/data}" PYTHONUNBUFFERED=1
OUT="${OUT:-runs/gpu}"
MEMBERS="${MEMBERS:-25000}"   # smaller for a quick check of the script itself (MEMBERS=200 EPOCHS=1 COOLDOWN=0 EDITS_N=200)
EPOCHS="${EPOCHS:-90}"
COOLDOWN="${COOLDOWN:-10}"
EDITS_N="${EDITS_N:-10000}"
LEVERS="${LEVERS-views}"   # named changes to the recipe, comma-separated (benchmarks/trace_recipe.py LEVERS); LEVERS= for none
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | tee "$OUT/log" || true
python benchmarks/trace_controls.py --members "$MEMBERS" --epochs "$EPOCHS" --cooldown "$COOLDOWN" --levers "$LEVERS" --device auto --keep-every 10 \
    --runs "$OUT/runs" --results "$OUT/trace_controls.json" --edits-n "$EDITS_N" 2>&1 | tee -a "$OUT/log"
