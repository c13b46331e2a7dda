#!/usr/bin/env bash
# The firmware's CI check, run the same way by people and by .ci/run:
# installs the missing Rust tools, then (cheapest first) fmt, clippy for a
# QEMU build of every core and for the board builds, docs, builds the four
# board configurations, and on each of the six QEMU machines: runs `classify`
# (every test image's logits must equal the host's), runs `kernels` where the
# core has the DSP extension (the Arm DSP kernels, those of the widen-dense
# feature too, must be bit-identical to the portable ones, on random layers and
# on the whole network), and proves that a
# wrong expected value fails the run (status 2) and a corrupted model is
# reported and fails it (status 3). On netduinoplus2 also the small network
# (TINYCNN_MODEL), the test vectors of another model (status 3), the size
# report, and the cycle estimate's checks (cycles.sh: needs cc and python3); on
# mps2-an385 the MLPerf Tiny networks, and on the micro:bit their DS-CNN and the
# shipped depthwise-separable network (data/separable/); on the M4, M3 and M0
# the audio front end (`frontend`: its features equal the host's). Every
# classify run's scratch must be what the plan says (check_scratch).
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

# QEMU machines: name (also its cargo alias in .cargo/config.toml), target,
# and whether the core has the DSP extension.
qemu_machines=(
    netduinoplus2:thumbv7em-none-eabihf:dsp
    mps2-an385:thumbv7m-none-eabi:-
    mps2-an386:thumbv7em-none-eabihf:dsp
    mps2-an500:thumbv7em-none-eabihf:dsp
    mps2-an505:thumbv8m.main-none-eabihf:dsp
    microbit:thumbv6m-none-eabi:-
)
# Real boards: feature and target.
boards=(
    stm32f4-discovery:thumbv7em-none-eabihf
    nucleo-f446re:thumbv7em-none-eabihf
    nrf52840-dk:thumbv7em-none-eabihf
    rpi-pico:thumbv6m-none-eabi
)

step "tools"
for target in thumbv7em-none-eabihf thumbv7m-none-eabi thumbv6m-none-eabi thumbv8m.main-none-eabihf; do
    if ! rustup target list --installed | grep -qx "$target"; then
        rustup target add "$target"
    fi
done
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

step "clippy (-D warnings): each QEMU machine and each board"
for entry in "${qemu_machines[@]}" "${boards[@]}"; do
    IFS=: read -r feature target _ <<<"$entry"
    echo "-- $feature ($target)"
    cargo clippy --release --all-targets --no-default-features --features "$feature" \
        --target "$target" -- -D warnings
done
echo "-- netduinoplus2 with widen-dense"
cargo clippy --release --all-targets --features widen-dense -- -D warnings

step "docs (-D warnings)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps

step "board builds (probe-rs, defmt over RTT): build-checked, not run"
for board in "${boards[@]}"; do
    IFS=: read -r feature target <<<"$board"
    echo "-- $feature ($target)"
    cargo build --release --no-default-features --features "$feature" --target "$target"
    ./size-report.sh "target/$target/release/classify"
done

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

# check_scratch LOG: the firmware's scratch is the plan's (a static of the bytes the plan
# says), an inference writes all of it, from its first byte to its last (the plan's peak,
# measured), and the RAM at peak is the statics and the stack.
check_scratch() {
    local log=$1 line planned static written ram peak statics stack
    line=$(grep -E 'INFO  scratch: [0-9]+ B planned' "$log") || {
        echo "ci.sh: $log has no scratch line" >&2
        exit 1
    }
    planned=$(sed -n 's/.*scratch: \([0-9]*\) B planned.*/\1/p' <<<"$line")
    static=$(sed -n 's/.*, static \([0-9]*\) B;.*/\1/p' <<<"$line")
    written=$(sed -n 's/.*writes bytes \([0-9]*\.\.[0-9]*\).*/\1/p' <<<"$line")
    if [[ $static != "$planned" || $written != "0..$planned" ]]; then
        echo "ci.sh: the scratch is not the plan's: $line" >&2
        exit 1
    fi
    ram=$(grep -E 'INFO  RAM: ' "$log")
    peak=$(sed -n 's/.*RAM: \([0-9]*\) B at peak.*/\1/p' <<<"$ram")
    statics=$(sed -n 's/.*= static \([0-9]*\) (.*/\1/p' <<<"$ram")
    stack=$(sed -n 's/.*+ peak stack \([0-9]*\) of.*/\1/p' <<<"$ram")
    if ((statics < planned || peak != statics + stack)); then
        echo "ci.sh: RAM at peak is not the scratch ($planned B), the other statics and the stack: $ram" >&2
        exit 1
    fi
    echo "ok: scratch $planned B as planned, all written; RAM at peak $peak B = statics $statics + stack $stack"
}

# The scratch the plan gives, from a run's log.
scratch_of() {
    sed -n 's/.*INFO  scratch: \([0-9]*\) B planned.*/\1/p' "$1"
}

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
for entry in "${qemu_machines[@]}"; do
    IFS=: read -r machine _ dsp <<<"$entry"
    step "$machine: every image's logits must equal the host's (classify)"
    cargo "$machine" 2>&1 | tee "$logs/$machine.log"
    # tee's status is 0: the firmware's is the pipeline's first.
    [[ ${PIPESTATUS[0]} -eq 0 ]] || exit 1
    check_scratch "$logs/$machine.log"
    if [[ $dsp == dsp ]]; then
        step "$machine: the DSP kernels must equal the portable ones bit for bit (kernels)"
        # With the kernels that read dense weights widened to int16 (the widen-dense feature).
        cargo "$machine" --bin kernels --features widened-kernels
    fi
    step "$machine: a wrong expected value must fail the run (expected: exit status 2)"
    expect_failure 2 "image 3: logits .* differ from the host's" \
        "a deliberately wrong expected logit on $machine" \
        cargo "$machine" --features wrong-expected
    step "$machine: a corrupted model blob must be reported and fail the run (expected: exit status 3)"
    expect_failure 3 "model blob rejected: ChecksumMismatch" \
        "a model blob with one flipped byte on $machine" \
        cargo "$machine" --features corrupt-model
done

step "netduinoplus2: the small network too (TINYCNN_MODEL)"
TINYCNN_MODEL=../data/small/model-int8.tcnn cargo netduinoplus2 2>&1 | tee "$logs/small.log"
[[ ${PIPESTATUS[0]} -eq 0 ]] || exit 1
check_scratch "$logs/small.log"

# The depthwise-separable network `host train` made (data/separable/): with the DSP kernels the
# parity tests run it on the M4 (tests/tests/firmware.rs); here the portable ones on the M0.
step "microbit: the depthwise-separable network (TINYCNN_MODEL)"
TINYCNN_MODEL=../data/separable/model-int8.tcnn cargo microbit 2>&1 | tee "$logs/separable-microbit.log"
[[ ${PIPESTATUS[0]} -eq 0 ]] || exit 1
check_scratch "$logs/separable-microbit.log"

# The audio front end (the `frontend` binary): the embedded clip's MFCCs, hop by hop as a
# microphone delivers them, must equal byte for byte those the build machine's core computed
# (build.rs), on the M4 and the M33 (DSP assembly, also checked there against the portable
# code, work buffer and bytes), the M3 and the M0.
frontend_runs=()
for machine in netduinoplus2 mps2-an505 mps2-an385 microbit; do
    step "$machine: the audio front end, hop by hop, equal to the host's features (frontend)"
    cargo "$machine" --bin frontend 2>&1 | tee "$logs/frontend-$machine.log"
    [[ ${PIPESTATUS[0]} -eq 0 ]] || exit 1
    frontend_runs+=("$machine")
done
step "netduinoplus2: a deliberately wrong expected feature must fail frontend (expected: exit status 2)"
expect_failure 2 "frame 9: features .* differ from the host's" \
    "a wrong expected feature" cargo netduinoplus2 --bin frontend --features wrong-expected

# Keyword spotting from raw samples (the `keyword` binary, data/keyword-spotting/): the shipped keyword
# network's test clips streamed hop by hop through the front end its model file describes, the
# network every 200 ms; each clip's logits must equal the host's. The M4 (DSP kernels and DSP
# front end), the M3 and the M0 (portable); the micro:bit's 256 KiB of flash hold three of the
# clips (three-clips.tctv), not twelve.
keyword_runs=()
for machine in netduinoplus2 mps2-an385 microbit; do
    step "$machine: keyword spotting from raw clips, streamed (keyword, data/keyword-spotting/)"
    vectors=../data/keyword-spotting/model-int8.tctv
    [[ $machine == microbit ]] && vectors=../data/keyword-spotting/three-clips.tctv
    TINYCNN_MODEL=../data/keyword-spotting/model-int8.tcnn TINYCNN_VECTORS=$vectors \
        cargo "$machine" --bin keyword 2>&1 | tee "$logs/keyword-$machine.log"
    [[ ${PIPESTATUS[0]} -eq 0 ]] || exit 1
    keyword_runs+=("$machine")
done
step "netduinoplus2: a deliberately wrong expected logit and feature must fail keyword (expected: exit status 2)"
expect_failure 2 "clip 1: logits .* differ from the host's" \
    "a wrong expected logit" env TINYCNN_MODEL=../data/keyword-spotting/model-int8.tcnn \
    cargo netduinoplus2 --bin keyword --features wrong-expected
expect_failure 2 "clip 2: feature 93 \\(frame 9\\) differs from the host's" \
    "a wrong expected feature" env TINYCNN_MODEL=../data/keyword-spotting/model-int8.tcnn \
    cargo netduinoplus2 --bin keyword --features wrong-expected

# The DS-CNN's layers (a 10x4 stride-2 first layer on one channel, depthwise and 1x1
# convolutions, an average pool) through both backends, step by step; the random cases of
# `kernels` above cover every DSP kernel, this covers them on a whole network.
step "netduinoplus2: the DSP kernels on the MLPerf Tiny DS-CNN, step by step (kernels, TINYCNN_MODEL)"
TINYCNN_MODEL=../data/mlperf/kws.tcnn cargo netduinoplus2 --bin kernels

# About 3 s: the plugin (cc), the firmware crate rebuilt for the absolute model path, and 190
# million instructions under the plugin, with its cycles computed twice (verify=1) and compared.
step "netduinoplus2: estimated cycles (QEMU plugin cycles/cycles.c): the known loop's cycles, and the plugin's instructions equal to the firmware's in every interval"
CYCLES_PLUGIN_ARGS=verify=1 ./cycles.sh ../data/small/model-int8.tcnn

# The MLPerf Tiny networks imported from TensorFlow Lite (data/mlperf/, made by `host import`
# and `host fixture --random`) on the Cortex-M3 with the portable kernels; the parity tests
# (tests/tests/firmware.rs) run them on the Cortex-M4 with the DSP kernels. The DS-CNN also
# runs on the micro:bit (16 KiB of RAM, 256 KiB of flash); the others do not fit it.
mlperf=(kws vww resnet8 autoencoder)
mlperf_runs=(separable:microbit)
for name in "${mlperf[@]}"; do
    machines=(mps2-an385)
    if [[ $name == kws ]]; then machines+=(microbit); fi
    for machine in "${machines[@]}"; do
        step "$machine: the MLPerf Tiny network $name (TINYCNN_MODEL)"
        TINYCNN_MODEL=../data/mlperf/$name.tcnn cargo "$machine" 2>&1 | tee "$logs/$name-$machine.log"
        [[ ${PIPESTATUS[0]} -eq 0 ]] || exit 1
        check_scratch "$logs/$name-$machine.log"
        mlperf_runs+=("$name:$machine")
    done
done

step "netduinoplus2: test vectors of another model must be refused (expected: exit status 3)"
expect_failure 3 "test vectors were written for another model" \
    "the test vectors of the small network beside the reference model" \
    env TINYCNN_VECTORS=../data/small/model-int8.tctv cargo netduinoplus2

step "size report (netduinoplus2)"
cargo build --release
./size-report.sh

step "summary: the reference network on each QEMU machine (the small one on the micro:bit)"
printf '%-14s %-11s %-9s %13s %9s %9s %9s %9s\n' machine core kernels instructions "per MAC" flash scratch "RAM peak"
for entry in "${qemu_machines[@]}"; do
    IFS=: read -r machine _ _ <<<"$entry"
    log=$logs/$machine.log
    core=$(sed -n 's/.*INFO  machine: .*, \(Cortex-[^ ]*\)$/\1/p' "$log")
    read -r kernels instructions <<<"$(sed -n 's/.*INFO  \([a-z-]*\): \([0-9]*\) instructions .* per inference.*/\1 \2/p' "$log")"
    per_mac=$(sed -n 's/.* per inference (.*), \([0-9.]*\) per MAC.*/\1/p' "$log" | head -n 1)
    flash=$(sed -n 's/.*INFO  flash: \([0-9]*\) B.*/\1/p' "$log")
    ram=$(sed -n 's/.*INFO  RAM: \([0-9]*\) B at peak.*/\1/p' "$log")
    printf '%-14s %-11s %-9s %13s %9.4f %9s %9s %9s\n' "$machine" "$core" "$kernels" "$instructions" "$per_mac" "$flash" "$(scratch_of "$log")" "$ram"
done


step "summary: the MLPerf Tiny networks (and the shipped depthwise-separable one)"
printf '%-12s %-14s %-9s %13s %9s %9s %9s %9s\n' network machine kernels instructions "per MAC" flash scratch "RAM peak"
for run in "${mlperf_runs[@]}"; do
    IFS=: read -r name machine <<<"$run"
    log=$logs/$name-$machine.log
    read -r kernels instructions <<<"$(sed -n 's/.*INFO  \([a-z-]*\): \([0-9]*\) instructions .* per inference.*/\1 \2/p' "$log")"
    per_mac=$(sed -n 's/.* per inference (.*), \([0-9.]*\) per MAC.*/\1/p' "$log" | head -n 1)
    flash=$(sed -n 's/.*INFO  flash: \([0-9]*\) B.*/\1/p' "$log")
    ram=$(sed -n 's/.*INFO  RAM: \([0-9]*\) B at peak.*/\1/p' "$log")
    printf '%-12s %-14s %-9s %13s %9.4f %9s %9s %9s\n' "$name" "$machine" "$kernels" "$instructions" "$per_mac" "$flash" "$(scratch_of "$log")" "$ram"
done

step "summary: the audio front end (MLPerf Tiny's MFCCs, 49 x 10 per second)"
printf '%-14s %-8s %22s %26s\n' machine FFT "tables (once)" "per second of audio"
for machine in "${frontend_runs[@]}"; do
    log=$logs/frontend-$machine.log
    for bits in 16 32; do
        tables=$(sed -n "s/.*front end, $bits-bit FFT: .* built in \([0-9]*\) counts.*/\1/p" "$log")
        second=$(sed -n "s/.*front end, $bits-bit FFT: .* counts, \([0-9]*\) per second of audio.*/\1/p" "$log")
        printf '%-14s %-8s %22s %26s\n' "$machine" "$bits-bit" "$tables" "$second"
    done
done

step "summary: keyword spotting, streamed (a classification every 200 ms on the last second)"
printf '%-14s %18s %18s %18s %9s\n' machine "front end /s" "network /s" "together /s" "RAM peak"
for machine in "${keyword_runs[@]}"; do
    log=$logs/keyword-$machine.log
    read -r front network together <<<"$(sed -n 's/.*per second of audio: front end \([0-9]*\), network \([0-9]*\) .*together \([0-9]*\) counts.*/\1 \2 \3/p' "$log")"
    ram=$(sed -n 's/.*INFO  RAM: \([0-9]*\) B at peak.*/\1/p' "$log")
    printf '%-14s %18s %18s %18s %9s\n' "$machine" "$front" "$network" "$together" "$ram"
done

echo
echo "ci.sh: firmware OK"

