#!/usr/bin/env bash
# The Keras peer: trains the Keras MNIST tutorial's network (host train's default), or with --arch
# any tinycnn description with host train's recipe options, with TensorFlow on the CPU and prints
# each epoch's training seconds and test loss and accuracy, then one JSON line with the figures.
# See scripts/keras-reference.py for the recipe and how each word maps to Keras.
#
# Usage: bash scripts/keras-reference.sh [OPTIONS]   (every option goes to keras-reference.py)
#
#   --data DIR              the four IDX files, raw or .gz (default: data/mnist in the repository,
#                           where `cargo run --release --bin host -- data --download` puts them)
#   --arch LAYERS           the network in tinycnn's text form, as host train --arch (or @FILE);
#                           default: the tutorial's
#   --batch-norm            BatchNormalization after every conv, dw and hidden dense layer
#   --bn-momentum M         its moving statistics' momentum (default 0.99, Keras's; MLPerf: 0.9)
#   --parse-only            print the layers, parameters and MACs as the core counts them; exit
#   --optimizer NAME        adagrad (default, the tutorial's) or adam (Keras's defaults)
#   --lr RATE               learning rate (default 0.01 for adagrad, 0.001 for adam)
#   --lr-schedule S         constant (default), step:EPOCHS:FACTOR or cosine, as host train
#   --weight-decay F        the optimizer's decoupled weight decay (default 0)
#   --adagrad-epsilon EPS   Adagrad's epsilon (default 1e-7, the tutorial's Keras)
#   --init SCHEME           glorot-uniform (default), he-uniform or he-normal, as host train
#   --batch-size N          pictures per batch (default 128)
#   --epochs N              epochs to train (default 1)
#   --seed S                seed of weights, shuffles and dropout (default 42)
#   --pad-to SIDE           frame each picture in black to SIDE x SIDE (idx-to-folders.py --pad-to
#                           makes the same pictures for host train)
#   --channels N            repeat each grey picture on N channels, 1 or 3 (default 1)
#   --limit N, --test-limit N   the first N training / test pictures only
#   --threads N             CPU threads for TensorFlow (default: all cores)
#   --verbose               Keras's progress bar
#
# The first run creates a virtual environment with pinned TensorFlow, Keras and numpy from
# PyPI (about 1.6 GB, a few minutes), in $KERAS_REFERENCE_VENV (default
# ~/.cache/tinycnn/keras-venv); later runs reuse it. Environment:
#   KERAS_REFERENCE_VENV        where the virtual environment lives
#   KERAS_REFERENCE_PYTHON      the interpreter that creates it (default python3; 3.10-3.13)
#   KERAS_REFERENCE_TENSORFLOW  the TensorFlow requirement (default tensorflow-cpu==2.21.0,
#                               tensorflow==2.21.0 on macOS, which has no tensorflow-cpu)
set -euo pipefail

usage() { sed -n '2,38p' "$0" | sed 's/^# \{0,1\}//'; }

for arg in "$@"; do
    case $arg in
        -h|--help) usage; exit 0 ;;
    esac
done

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# scripts/tflite-reference.sh runs its own script in the same environment.
script=${KERAS_REFERENCE_SCRIPT:-$root/scripts/keras-reference.py}
venv=${KERAS_REFERENCE_VENV:-$HOME/.cache/tinycnn/keras-venv}
python=${KERAS_REFERENCE_PYTHON:-python3}

# Pinned: the versions the README's Keras figures were measured with.
if [[ $(uname -s) == Darwin ]]; then
    default_tensorflow="tensorflow==2.21.0"
else
    default_tensorflow="tensorflow-cpu==2.21.0"
fi
requirements=(
    "${KERAS_REFERENCE_TENSORFLOW:-$default_tensorflow}"
    "keras==3.15.1"
    "numpy==2.4.6"
)

say() { echo "keras-reference.sh: $*" >&2; }

# Exit status 0 when the venv's interpreter has every requirement at its pinned version.
have_requirements() {
    [[ -x $venv/bin/python ]] || return 1
    "$venv/bin/python" - "${requirements[@]}" <<'EOF' 2>/dev/null
import sys
from importlib import metadata
for requirement in sys.argv[1:]:
    name, _, version = requirement.partition("==")
    try:
        installed = metadata.version(name.strip())
    except metadata.PackageNotFoundError:
        sys.exit(1)
    if version and installed != version.strip():
        sys.exit(1)
EOF
}

if ! have_requirements; then
    if [[ ! -x $venv/bin/python ]]; then
        if ! command -v "$python" >/dev/null 2>&1; then
            say "$python not found; install Python 3.10-3.13 or set KERAS_REFERENCE_PYTHON"
            exit 1
        fi
        if ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
            say "'$python -m venv' is unavailable (on Debian and Ubuntu: apt-get install python3-venv);"
            say "or create a virtual environment yourself and point KERAS_REFERENCE_VENV at it"
            exit 1
        fi
        say "creating a virtual environment in $venv (once)"
        mkdir -p "$(dirname "$venv")"
        if ! "$python" -m venv "$venv"; then
            say "'$python -m venv $venv' failed (on Debian and Ubuntu: apt-get install python3-venv)"
            exit 1
        fi
    fi
    say "installing ${requirements[*]} from PyPI into $venv"
    if ! "$venv/bin/python" -m pip install --disable-pip-version-check --quiet "${requirements[@]}"; then
        say "pip could not install ${requirements[*]}."
        say "TensorFlow 2.21 has wheels for Python 3.10-3.13 (this venv has $("$venv/bin/python" -V 2>&1));"
        say "tensorflow-cpu only for x86-64 Linux and Windows: elsewhere try KERAS_REFERENCE_TENSORFLOW=tensorflow==2.21.0"
        exit 1
    fi
fi

exec "$venv/bin/python" "$script" "$@"
