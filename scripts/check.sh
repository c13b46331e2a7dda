#!/usr/bin/env bash
# Every check of the project, cheapest first, run the same way by people and by
# CI (.ci/run calls exactly this):
#
#   tools -> fmt -> clippy (host, no_std targets) -> no_std builds -> aarch64
#   (core tests under qemu-aarch64, host checked) -> tests (core, host, parity
#   incl. firmware-vs-host in QEMU) -> firmware checks in QEMU -> docs -> a
#   short fuzz run (--fuzz SECONDS, default 20; 0 skips)
#
# It installs what is missing: the thumb and aarch64 targets, qemu-system-arm,
# qemu-user, an aarch64 C cross-compiler and python3-venv (apt, as root),
# flip-link and defmt-print (cargo install), TensorFlow Lite's interpreters
# (ai-edge-litert and tflite-micro from PyPI, in a virtual environment in
# ~/.cache/tinycnn/litert-venv or $TINYCNN_LITERT_VENV), cargo-fuzz and
# nightly for the fuzz run. MNIST must be at ../shared/data/mnist beside the checkout or
# in $MNIST_DIR (nothing is downloaded: TINYCNN_NO_DOWNLOAD=1 below).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
# The checks never reach the internet: `host` does not download data sets here (its download
# tests serve the files themselves on 127.0.0.1 and say so explicitly).
export TINYCNN_NO_DOWNLOAD=1

fuzz_seconds=20
while [[ $# -gt 0 ]]; do
    case $1 in
        --fuzz) fuzz_seconds=$2; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

started=$(date +%s)
timings=()
step_started=$started
step_name=""
step() {
    local now
    now=$(date +%s)
    if [[ -n $step_name ]]; then timings+=("$(printf '%5ds  %s' $((now - step_started)) "$step_name")"); fi
    step_name=$1
    step_started=$now
    printf '\n==> %s\n' "$1"
}
summary() {
    step "done"
    printf '\n'
    printf '%s\n' "${timings[@]}"
    printf '%5ds  total\n' $(($(date +%s) - started))
}

step "tools"
rustup target add thumbv7em-none-eabihf thumbv7m-none-eabi thumbv6m-none-eabi thumbv8m.main-none-eabihf \
    aarch64-unknown-linux-gnu
rustup component add rustfmt clippy llvm-tools
packages=()
command -v qemu-system-arm >/dev/null || packages+=(qemu-system-arm)
command -v qemu-aarch64 >/dev/null || packages+=(qemu-user)
command -v aarch64-linux-gnu-gcc >/dev/null || packages+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
# Python's venv, for TensorFlow Lite's interpreter (below).
python3 -c 'import venv, ensurepip' 2>/dev/null || packages+=(python3-venv)
if [[ ${#packages[@]} -gt 0 ]]; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
    else
        echo "check.sh: ${packages[*]} missing: install them (Debian/Ubuntu: sudo apt-get install ${packages[*]})" >&2
        exit 1
    fi
fi
command -v flip-link >/dev/null || cargo install flip-link --locked --version '^0.1'
command -v defmt-print >/dev/null || cargo install defmt-print --locked --version '^1'
# TensorFlow Lite's interpreters, which tests/tests/tflite_models.rs runs on tinycnn's .tflite
# exports: desktop TensorFlow Lite (ai-edge-litert) and TensorFlow Lite Micro (tflite-micro,
# which PyPI has as nightly builds only), pinned; a virtual environment of their own, made once.
litert_venv=${TINYCNN_LITERT_VENV:-$HOME/.cache/tinycnn/litert-venv}
if ! "$litert_venv/bin/python" -c 'import ai_edge_litert, numpy
from tflite_micro.python.tflite_micro import runtime' 2>/dev/null; then
    python3 -m venv "$litert_venv"
    "$litert_venv/bin/python" -m pip install --disable-pip-version-check --quiet \
        "ai-edge-litert==2.3.0" "numpy==2.4.6" "tflite-micro==0.dev20261023182759"
fi
export TINYCNN_TFLITE_PYTHON=$litert_venv/bin/python TINYCNN_REQUIRE_TFLITE=1
mnist=${MNIST_DIR:-../shared/data/mnist}
if [[ ! -f $mnist/t10k-images-idx3-ubyte.gz && ! -f $mnist/t10k-images-idx3-ubyte ]]; then
    echo "check.sh: MNIST not found in $mnist: put the four IDX files there or set MNIST_DIR" >&2
    exit 1
fi
# Absolute: cargo runs each test binary in its package's directory.
mnist=$(cd "$mnist" && pwd)
echo "$(cargo --version); $(qemu-system-arm --version | head -n 1); MNIST in $mnist"

step "cargo fmt --check (workspace, firmware, fuzz targets)"
cargo fmt --all --check
(cd firmware && cargo fmt --check)
(cd core/fuzz && cargo fmt --check)

step "clippy -D warnings (workspace)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "clippy -D warnings (tinycnn for thumbv7em and thumbv8m.main with DSP kernels, and thumbv6m)"
cargo clippy -p tinycnn --target thumbv7em-none-eabihf --features defmt,widened-dense --locked -- -D warnings
# The Cortex-M33's DSP extension is optional: naming the core enables it.
CARGO_TARGET_THUMBV8M_MAIN_NONE_EABIHF_RUSTFLAGS="-C target-cpu=cortex-m33" \
    cargo clippy -p tinycnn --target thumbv8m.main-none-eabihf --features defmt --locked -- -D warnings
cargo clippy -p tinycnn --target thumbv6m-none-eabi --locked -- -D warnings

step "no_std builds (thumbv6m-none-eabi, thumbv7em-none-eabihf)"
cargo build -p tinycnn --target thumbv6m-none-eabi --release --locked
cargo build -p tinycnn --target thumbv7em-none-eabihf --release --locked --features defmt

step "aarch64: the core's tests under qemu-aarch64 (wide kernels built for NEON), host checked"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
cargo test -p tinycnn --target aarch64-unknown-linux-gnu --release --locked
# With the host's optional burn-ndarray backend: the code and the test behind that feature are
# checked here, where burn is compiled for another target anyway, and not built for the
# x86-64 steps (it was the longest crate of their builds; running that test needs
# `cargo test -p tinycnn-host --features ndarray --test fastconv_matches_burn`).
cargo clippy -p tinycnn -p tinycnn-host --target aarch64-unknown-linux-gnu --all-targets \
    --features tinycnn-host/ndarray --locked -- -D warnings

step "tests (core, host, parity; the parity tests run the firmware in QEMU)"
MNIST_DIR=$mnist cargo test --workspace --locked

step "firmware in QEMU on six machines (classify, DSP kernels vs portable, injected faults), board builds"
bash firmware/ci.sh

step "docs (-D warnings)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

if [[ $fuzz_seconds -gt 0 ]]; then
    step "fuzz the model loader and runner (${fuzz_seconds}s per target)"
    rustup toolchain install nightly --profile minimal >/dev/null
    command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
    bash core/fuzz/seed-corpus.sh
    for target in model_bytes model_payload test_vectors; do
        log=$(mktemp)
        if ! (cd core/fuzz && cargo +nightly fuzz run "$target" -- -max_total_time="$fuzz_seconds" \
            -max_len=3000000 -print_final_stats=1) >"$log" 2>&1; then
            tail -n 40 "$log"
            echo "check.sh: fuzzing $target failed (a crash is saved in core/fuzz/artifacts/$target)" >&2
            exit 1
        fi
        echo "$target: $(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}') inputs, no crash"
        rm -f "$log"
    done
fi

summary
