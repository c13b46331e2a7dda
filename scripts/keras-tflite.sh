#!/usr/bin/env bash
# The Keras side of the TensorFlow Lite proof: trains the networks of data/keras/ in Keras,
# converts them with TensorFlow to full-int8 .tflite files and records what TensorFlow Lite's
# reference kernels compute with them on the 10,000 test images (data/keras/NAME.tflite,
# NAME.logits, NAME.json). tests/tests/tflite_models.rs imports the .tflite files into tinycnn
# and compares. See scripts/keras-tflite.py.
#
# Usage: bash scripts/keras-tflite.sh [--data DIR] [--out DIR] [--epochs N] [--only NAME]
#
#   --data DIR     the four MNIST IDX files, raw or .gz (default: data/mnist)
#   --out DIR      where the files go (default: data/keras, the shipped fixtures)
#   --epochs N     epochs of training (default 1)
#   --only NAME    one of reference, small, mixed (repeatable; default all three)
#
# It runs in the virtual environment of scripts/keras-reference.sh, which creates it on first
# use (pinned TensorFlow from PyPI, about 1.6 GB); KERAS_REFERENCE_VENV says where it is.
set -euo pipefail
for arg in "$@"; do
    case $arg in
        -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    esac
done
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KERAS_REFERENCE_SCRIPT="$root/scripts/keras-tflite.py" exec bash "$root/scripts/keras-reference.sh" "$@"
