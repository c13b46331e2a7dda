#!/usr/bin/env bash
# The firmware's CI check, run the same way by people and by .ci/run:
# installs the missing Rust tools, then (cheapest first) fmt, clippy for both
# the QEMU and board builds, docs, links the board build, and in QEMU: runs
# `classify` with the reference network and with the small one (every test
# image's logits must equal the host's), runs `kernels` (the Arm DSP kernels
# must be bit-identical to the portable ones, on random layers and on the whole
# network), proves that a wrong expected value fails the run (status 2), that a
# corrupted model and the test vectors of another model are reported and fail
# it (status 3), and prints the size report.
#
# It needs data/model-int8.tcnn, data/small/model-int8.tcnn and their test
# vectors (.tctv beside each) at the repository root (`host train`, `host
# fixture`); the build stops with a message if they are missing.
#
# qemu-system-arm is not installed here (that needs apt as root): .ci/run
# installs it; this script stops with a clear message if it is missing.
set -euo pipefail
cd "$(dirname "$0")"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

step() { printf '\n==> %s\n' "$*"; }

step "tools"
if ! rustup target list --installed | grep -qx thumbv7em-none-eabihf; then
    rustup target add thumbv7em-none-eabihf
fi
if ! command -v flip-link >/dev/null; then
    cargo install flip-link --locked --version '^0.1'
fi
if ! command -v defmt-print >/dev/null; then
    # 1.x decodes the wire format of defmt 1.x.
    cargo install defmt-print --locked --version '^1'
fi
if ! command -v qemu-system-arm >/dev/null; then
    echo "ci.sh: qemu-system-arm is missing; install it first: apt-get install -y qemu-system-arm" >&2
    exit 1
fi
echo "$(qemu-system-arm --version | head -n 1); $(defmt-print --version | head -n 1); flip-link $(command -v flip-link)"

step "cargo fmt --check"
cargo fmt --check

step "clippy (QEMU build)"
cargo clippy --release --all-targets -- -D warnings
step "clippy (board build: rtt)"
cargo clippy --release --all-targets --no-default-features --features rtt -- -D warnings

step "docs (-D warnings)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps

step "board build links (rtt)"
cargo build --release --no-default-features --features rtt

# expect_failure STATUS PATTERN WHAT COMMAND...: runs COMMAND, which must exit
# with STATUS and log a line matching PATTERN (grep -E); WHAT names the fault
# that was injected, for the messages.
expect_failure() {
    local expected=$1 pattern=$2 what=$3
    shift 3
    local log status
    log=$(mktemp)
    set +e
    "$@" 2>&1 | tee "$log"
    status=${PIPESTATUS[0]}
    set -e
    if [[ $status -ne $expected ]]; then
        echo "ci.sh: with $what the run exited $status, not $expected" >&2
        rm -f "$log"
        exit 1
    fi
    if ! grep -Eq "$pattern" "$log"; then
        echo "ci.sh: with $what the log does not say /$pattern/" >&2
        rm -f "$log"
        exit 1
    fi
    rm -f "$log"
    echo "ok: $what was caught (exit status $expected)"
}

step "run in QEMU: every image's logits must equal the host's (classify, reference network)"
cargo run --release

step "run in QEMU: the same with the small network (TINYCNN_MODEL)"
TINYCNN_MODEL=../data/small/model-int8.tcnn cargo run --release

step "run in QEMU: the DSP kernels must equal the portable ones bit for bit (kernels)"
cargo run --release --bin kernels

step "a wrong expected value must fail the run (expected: exit status 2)"
expect_failure 2 "image 3: logits .* differ from the host's" \
    "a deliberately wrong expected logit" \
    cargo run --release --features wrong-expected

step "a corrupted model blob must be reported and fail the run (expected: exit status 3)"
expect_failure 3 "model blob rejected: ChecksumMismatch" \
    "a model blob with one flipped byte" \
    cargo run --release --features corrupt-model

step "test vectors of another model must be refused (expected: exit status 3)"
expect_failure 3 "test vectors were written for another model" \
    "the test vectors of the small network beside the reference model" \
    env TINYCNN_VECTORS=../data/small/model-int8.tctv cargo run --release

step "size report"
cargo build --release
./size-report.sh

echo
echo "ci.sh: firmware OK"
