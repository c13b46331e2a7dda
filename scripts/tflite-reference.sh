#!/usr/bin/env bash
# The TensorFlow Lite peer of `host bench infer`: the Keras MNIST tutorial's network, trained
# for one epoch on 5,000 images, converted to f32 and full-int8 TensorFlow Lite models and timed
# one image at a time on one thread. Writes the figures to runs/tflite-reference.json, where
# `host bench infer` finds them. See scripts/tflite-reference.py.
#
# Usage: bash scripts/tflite-reference.sh [--data DIR] [--out FILE] [--train-images N] [--repeats N]
#        bash scripts/tflite-reference.sh --model FILE.tflite [--images N] [--rounds N] [--seed S] [--out FILE]
#
#   --data DIR          the four MNIST IDX files, raw or .gz (default: data/mnist)
#   --out FILE          where the figures go (default: runs/tflite-reference.json; none with --model)
#   --train-images N    images of the one training epoch (default 5000)
#   --repeats N         timed calls per model (default 300)
#   --model FILE        time this fully-integer .tflite instead (data/mlperf/*.tflite), on --rounds
#                       rounds of --images random int8 inputs (splitmix64 of --seed); any Python
#                       with ai-edge-litert runs scripts/tflite-reference.py --model directly, and
#                       `host bench infer --model M.tcnn --tflite-model M.tflite` alternates it
#                       with the core
#
# It runs in the virtual environment of scripts/keras-reference.sh, which creates it on first
# use (pinned TensorFlow from PyPI, about 1.6 GB); KERAS_REFERENCE_VENV says where it is.
set -euo pipefail
for arg in "$@"; do
    case $arg in
        -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    esac
done
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KERAS_REFERENCE_SCRIPT="$root/scripts/tflite-reference.py" exec bash "$root/scripts/keras-reference.sh" "$@"
