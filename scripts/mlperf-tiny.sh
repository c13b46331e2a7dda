#!/usr/bin/env bash
# The MLPerf Tiny fixtures: builds the four MLPerf Tiny reference networks (keyword spotting
# DS-CNN, visual wake words MobileNetV1 0.25, ResNet-8, the anomaly-detection autoencoder) in
# Keras, trains each briefly on random data, converts each with TensorFlow to full int8 and
# records what TensorFlow Lite Micro and TensorFlow Lite's reference kernels output for 1,000
# random inputs (data/mlperf/NAME.tflite, NAME.tflm, NAME.litert, NAME.json; see
# data/mlperf/README.md). With --keras-tflm it writes instead data/keras/NAME.tflm, TensorFlow
# Lite Micro's outputs for the models of data/keras/ on the 10,000 MNIST test images. See
# scripts/mlperf-tiny.py.
#
# Usage: bash scripts/mlperf-tiny.sh [--out DIR] [--only NAME] [--count N] [--threads N] [--jobs N]
#        bash scripts/mlperf-tiny.sh --keras-tflm [--data DIR] [--keras-dir DIR]
#
#   --out DIR        where the files go (default: data/mlperf, the shipped fixtures)
#   --only NAME      one of kws, vww, resnet8, autoencoder (repeatable; default all four)
#   --count N        random inputs per network (default 1000)
#   --threads N      CPU threads for TensorFlow's training (default 2)
#   --jobs N         processes that run the interpreters (default 2)
#   --keras-tflm     the data/keras mode: --data DIR the four MNIST IDX files, raw or .gz
#                    (default data/mnist), --keras-dir DIR the models (default data/keras)
#
# It runs in the virtual environment of scripts/keras-reference.sh, which creates it on first
# use (pinned TensorFlow from PyPI, about 1.6 GB; KERAS_REFERENCE_VENV says where it is), and
# adds to it the pinned TensorFlow Lite Micro and ai-edge-litert below (a few MB).
set -euo pipefail
for arg in "$@"; do
    case $arg in
        -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    esac
done
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${KERAS_REFERENCE_VENV:-$HOME/.cache/tinycnn/keras-venv}

# Pinned: the versions data/mlperf/ was made with. TensorFlow Lite Micro publishes only
# nightly builds on PyPI (versions 0.devYYYYMMDDhhmmss).
extras=(
    "tflite-micro==0.dev20261023182759"
    "ai-edge-litert==2.3.0"
)

say() { echo "mlperf-tiny.sh: $*" >&2; }

# scripts/keras-reference.sh creates the venv with TensorFlow, Keras and numpy (or checks
# them); the script it runs here is empty.
KERAS_REFERENCE_SCRIPT=/dev/null bash "$root/scripts/keras-reference.sh"

if ! "$venv/bin/python" - "${extras[@]}" <<'PY' 2>/dev/null
import sys
from importlib import metadata
for requirement in sys.argv[1:]:
    name, _, version = requirement.partition("==")
    try:
        if metadata.version(name) != version:
            sys.exit(1)
    except metadata.PackageNotFoundError:
        sys.exit(1)
PY
then
    say "installing ${extras[*]} from PyPI into $venv"
    if ! "$venv/bin/python" -m pip install --disable-pip-version-check --quiet "${extras[@]}"; then
        say "pip could not install ${extras[*]}; tflite-micro has wheels for x86-64 Linux only"
        exit 1
    fi
fi

exec "$venv/bin/python" "$root/scripts/mlperf-tiny.py" "$@"
