#!/usr/bin/env bash
# CI, second part: cifarkit in an environment without TensorFlow (Keras on JAX, on the CPU), as
# README's "Without TensorFlow" installs it: cifarkit with --no-deps, then Keras, JAX and the few
# small packages the training side needs. Runs a two-epoch `cifarkit train alexnet-cifar` on a
# tiny synthetic CIFAR-10 archive, `evaluate`, `predict`, a resume after SIGKILL, and
# `scripts/gpu_check.py --simulate --backends jax`. Fails on the first failure.
#
#   scripts/ci_no_tensorflow.sh [VENV]   # default .venv-no-tf, made fresh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${1:-.venv-no-tf}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export KERAS_BACKEND=jax
start=$SECONDS
step() { echo "== $* ($((SECONDS - start)) s)"; }

step "environment without TensorFlow in $VENV"
rm -rf "$VENV"
python3 -m venv "$VENV"
PY=$(cd "$VENV" && pwd)/bin/python
"$PY" -m pip install --quiet --upgrade pip
"$PY" -m pip install --quiet --no-deps -e .
"$PY" -m pip install --quiet keras jax numpy pillow tqdm typer pydantic
if "$PY" -c "import tensorflow" 2>/dev/null; then
    echo "TensorFlow is importable in $VENV: this check needs an environment without it" >&2
    exit 1
fi
CIFARKIT=("$PY" -m cifarkit)

step "tiny synthetic CIFAR-10 archive"
"$PY" - "$WORK" <<'EOF'
import sys
from pathlib import Path
sys.path.insert(0, "tests")
from synth import make_cifar10_python
from PIL import Image
import numpy as np

work = Path(sys.argv[1])
make_cifar10_python(work / "small", per_batch=20, test=30)  # 100 training images
make_cifar10_python(work / "large", per_batch=160, test=30)  # 800: epochs long enough to kill one
(work / "images").mkdir()
rng = np.random.default_rng(0)
Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(work / "images" / "a.png")
Image.fromarray(rng.integers(0, 256, (45, 60, 3), dtype=np.uint8)).save(work / "images" / "b.jpg")
EOF
SMALL=$WORK/small/cifar10-synth-python.tar.gz
LARGE=$WORK/large/cifar10-synth-python.tar.gz
TRAIN=(train alexnet-cifar -m width=0.25 --batch-size 32)

step "train two epochs"
"${CIFARKIT[@]}" "${TRAIN[@]}" --data "$SMALL" --workdir "$WORK/run" --epochs 2
for name in config.json stats.json history.csv curves.png last.keras report.json; do
    test -f "$WORK/run/$name" || { echo "no $name in the run folder" >&2; exit 1; }
done
# Without --holdout nothing is chosen on the test split: the run's model is last.keras alone.
test ! -f "$WORK/run/best.keras" || { echo "best.keras chosen on the test split" >&2; exit 1; }
"$PY" -c "import json, sys; r = json.load(open(sys.argv[1])); assert r['epochs_run'] == 2 and r['runtime']['backend'] == 'jax', r" \
    "$WORK/run/report.json"

step "evaluate"
"${CIFARKIT[@]}" evaluate "$WORK/run" --quiet
test -f "$WORK/run/eval-test/metrics.json"

step "predict"
"${CIFARKIT[@]}" predict "$WORK/run" "$WORK/images"
test "$(wc -l < "$WORK/run/predictions.csv")" -eq 3

step "resume after SIGKILL"
RESUME=("${CIFARKIT[@]}" "${TRAIN[@]}" --data "$LARGE" --workdir "$WORK/resume" --epochs 4)
setsid "${RESUME[@]}" > /dev/null 2>&1 &
job=$!
for _ in $(seq 1 2400); do  # the backup is the last file an epoch's end writes
    [ -f "$WORK/resume/backup/state.json" ] && break
    kill -0 "$job" 2>/dev/null || break
    sleep 0.05
done
kill -KILL -- "-$job" 2>/dev/null || true
wait "$job" 2>/dev/null || true
test -f "$WORK/resume/backup/state.json" || { echo "no backup to resume from" >&2; exit 1; }
test ! -f "$WORK/resume/report.json" || { echo "the run finished before the kill" >&2; exit 1; }
"${RESUME[@]}" 2> "$WORK/resume.log" || { cat "$WORK/resume.log" >&2; exit 1; }
grep -q "resumed from the backup" "$WORK/resume.log" || { cat "$WORK/resume.log" >&2; exit 1; }
"$PY" -c "
import json, sys
from cifarkit.training.rundir import read_history
history = read_history(sys.argv[1] + '/history.csv')
assert [row['epoch'] for row in history] == [1, 2, 3, 4], history
report = json.load(open(sys.argv[1] + '/report.json'))
assert report['epochs_run'] == 4 and report['resumed_from_epoch'] >= 1, report
" "$WORK/resume"

step "scripts/gpu_check.py --simulate --backends jax"
"$PY" scripts/gpu_check.py --simulate --backends jax --out "$WORK/gpu-check"
test -f "$WORK/gpu-check/gpu-check.json"

step "all passed without TensorFlow"
