#!/usr/bin/env bash
# The trainer itself on a GPU machine without TensorFlow: `cifarkit train` on Keras's JAX backend,
# the same command as docs/RESULTS.md's CPU run of alexnet-cifar, then evaluate, predict, and the
# torchvision ImageFolder test on a PNG tree export.
#
#   scripts/gpu_train_check.sh OUT_DIR
#
# Expects, in the repository: .whl/ (keras, namex, optree, typing_extensions wheels for the
# machine's Python; see docs/GPU.md) and .gpu/ (cifar10-jpeg.tar.gz and make_cifar10_archive.py
# from ../shared/data), both ignored by git and carried to the machine. Writes the run folder,
# the logs and a summary into OUT_DIR.
set -uo pipefail
out=${1:?usage: scripts/gpu_train_check.sh OUT_DIR}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
python3 -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)" | tee -a "$out/gpu.txt"
archive=/tmp/cifar-10-python.tar.gz
/usr/bin/time -f "%e s archive" python3 .gpu/make_cifar10_archive.py "$archive" 2>&1 | tail -2
/usr/bin/time -v python3 -m cifarkit train alexnet-cifar --data "$archive" --no-verify --workdir "$out/run" \
    --epochs 12 -m width=0.35 -m dropout=0.2 --label-smoothing 0.1 2>&1 | grep -v "^\s*\(Average\|Socket\|Signals\|Swaps\|Page\|File\|Major\|Minor\|Voluntary\|Involuntary\|Exit\)" | tee "$out/train.log"
python3 -m cifarkit evaluate "$out/run" 2>&1 | tail -16 | tee "$out/evaluate.log"
python3 -m pytest -q -p no:cacheprovider tests/test_use_with.py -rs 2>&1 | tail -3 | tee "$out/imagefolder.log"
rm -rf "$out/run/backup"  # keep what comes back under the size limit
