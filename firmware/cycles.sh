#!/usr/bin/env bash
# Estimated Cortex-M4 cycles beside the instructions the firmware counts, per
# inference and per layer: builds the QEMU plugin cycles/cycles.c, runs
# `classify` on netduinoplus2 (QEMU, -icount shift=0) with it, and pairs the
# plugin's intervals with the firmware's log (cycles/report.py), checking that
# the plugin counted exactly the firmware's instructions in every interval.
#
#   ./cycles.sh [MODEL] [--images] [--widen-dense]          (from anywhere)
#
# MODEL: an int8 .tcnn with its test vectors beside it (default: the
# firmware's default: TINYCNN_MODEL, else ../data/model-int8.tcnn); --images:
# a line per image; --widen-dense: the firmware built with its `widen-dense`
# feature (the dense weights widened to int16 in flash).
# CYCLES_PLUGIN_ARGS, e.g. refill=3,div=2, changes the cycle model (see
# cycles/cycles.c). The firmware's log and the plugin's intervals are kept in
# firmware/target/cycles/DIR-NAME.log and DIR-NAME.intervals.
set -euo pipefail

model=""
report_args=()
cargo_args=()
for arg in "$@"; do
    case $arg in
        --images) report_args+=(--images) ;;
        --widen-dense) cargo_args+=(--features widen-dense) ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        -*) echo "cycles.sh: unknown option $arg" >&2; exit 2 ;;
        *)
            if [[ -n $model ]]; then echo "cycles.sh: one model at a time" >&2; exit 2; fi
            model=$arg
            ;;
    esac
done
if [[ -z $model && -n ${TINYCNN_MODEL:-} ]]; then
    # As cargo reads it: relative to firmware/.
    model=$TINYCNN_MODEL
    [[ $model = /* ]] || model=$(dirname "$0")/$model
fi
if [[ -n $model ]]; then
    if [[ ! -f $model ]]; then echo "cycles.sh: $model: no such model file" >&2; exit 2; fi
    model=$(cd "$(dirname "$model")" && pwd)/$(basename "$model")
    name=$(basename "$(dirname "$model")")/$(basename "$model" .tcnn)
    export TINYCNN_MODEL=$model
else
    name=data/model-int8
fi

cd "$(dirname "$0")"
plugin=$(cycles/build.sh)
out=$(dirname "$plugin")
log=$out/${name//\//-}.log
intervals=$out/${name//\//-}.intervals
rm -f "$intervals"
export QEMU_PLUGIN="$plugin,out=$intervals${CYCLES_PLUGIN_ARGS:+,$CYCLES_PLUGIN_ARGS}"

# The default machine: netduinoplus2, the one whose TIM2 counts instructions exactly.
set +e
cargo run --release "${cargo_args[@]}" >"$log" 2>&1
status=$?
set -e
if [[ $status -ne 0 || ! -s $intervals ]]; then
    tail -n 30 "$log" >&2
    echo "cycles.sh: the firmware run failed (status $status; log: $log)" >&2
    exit 1
fi
python3 cycles/report.py "$log" "$intervals" --name "$name" "${report_args[@]}"
