#!/usr/bin/env bash
# Every benchmark that docs/BENCHMARKS.md quotes for the code as it is, one after another on one
# machine, each with the load average before and after it; a log per benchmark under LOGS.
# Run it on a quiet machine (nothing else busy): about 50 minutes on 2 cores.
#
#   scripts/bench_rerun.sh [LOGS]          # default LOGS: /tmp/cifarkit-bench-<date>
#   ONLY="export pipeline" scripts/bench_rerun.sh
#   BEAM_PYTHON=/path/to/venv-with-beam/bin/python TORCH_PYTHON=/path/to/venv-with-torchvision/bin/python \
#       scripts/bench_rerun.sh      # the photo tree's Beam contender and the photo pipeline's torchvision one
#
# Needs the real CIFAR-10 archive at ~/.cache/cifarkit-real/cifar-10-python.tar.gz (see
# docs/BENCHMARKS.md, Export); the before/after comparisons of single changes are not rerun (their
# "before" is an old commit, measured once when the change landed).
set -uo pipefail
cd "$(dirname "$0")/.."
LOGS=${1:-/tmp/cifarkit-bench-$(date -u +%Y%m%d-%H%M)}
mkdir -p "$LOGS"
ARCHIVE=~/.cache/cifarkit-real/cifar-10-python.tar.gz
BEAM_PYTHON=${BEAM_PYTHON:-python}
TORCH=()
[[ -n "${TORCH_PYTHON:-}" ]] && TORCH=(--torch-python "$TORCH_PYTHON")
TFRECORD="$LOGS/cifar10-tfrecord"

bench() {  # NAME COMMAND...
  local name=$1; shift
  if [[ -n "${ONLY:-}" && " $ONLY " != *" $name "* ]]; then return; fi
  {
    echo "# $name: $*"
    echo "# start $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD) load $(cut -d' ' -f1-3 /proc/loadavg)"
  } | tee "$LOGS/$name.log"
  local start=$SECONDS
  "$@" >>"$LOGS/$name.log" 2>&1
  local rc=$?
  echo "# end $(date -u +%FT%TZ) rc $rc $((SECONDS - start)) s load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$LOGS/$name.log"
}

python -m cifarkit export -s "$ARCHIVE" --no-verify --format tfrecord --out "$TFRECORD" --quiet || exit 1
bench export python scripts/bench_export.py --repeats 2 --sample-interval 0.25 --json "$LOGS/export.json"
bench export-formats python scripts/bench_export.py --repeats 2 \
  --only cifarkit-tfrecord,cifarkit-parquet,cifarkit-webdataset,cifarkit-arrayrecord
bench read-back-parquet python scripts/bench_export.py --read-back parquet --repeats 2
bench read-back-webdataset python scripts/bench_export.py --read-back webdataset --repeats 1
bench read-back-arrayrecord python scripts/bench_export.py --read-back arrayrecord --repeats 2
bench export-photos python scripts/bench_export.py --photos 300 --repeats 2
bench photo-read python scripts/bench_photo_read.py --photos 300 --size 32 --repeats 5
bench photo-read-2to1 python scripts/bench_photo_read.py --photos 300 --size 32 --repeats 5 --sizes 600x1200,1200x600
bench load python scripts/bench_load.py --export "$TFRECORD" --repeats 5
bench pipeline python scripts/bench_pipeline.py --source "$ARCHIVE" --no-verify --images 10240 --repeats 5
bench photo-pipeline python scripts/bench_photo_pipeline.py "${TORCH[@]}" --json "$LOGS/photo-pipeline.json"
bench photo-tree "$BEAM_PYTHON" scripts/bench_photo_tree.py --sizes 10000,100000 --workers 2 --only cifarkit,tfds,beam
bench train python scripts/bench_train.py --images 2560 --epochs 2 --rounds 2 --width 0.5
bench train-whitenet python scripts/bench_train.py --model whitenet --batch 1024 --images 10240 --epochs 2 --rounds 2 --only cifarkit
bench backends python scripts/bench_backends.py --backends tensorflow,jax --warmup 2 --rounds 3 --steps 3
echo "logs: $LOGS"
