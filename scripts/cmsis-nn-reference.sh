#!/usr/bin/env bash
# CMSIS-NN's instructions and estimated Cortex-M4 cycles on the four MLPerf Tiny networks
# (data/mlperf/NAME.tflite), layer by layer, as TensorFlow Lite Micro's CMSIS-NN kernels call it:
#
#   bash scripts/cmsis-nn-reference.sh CMSIS_NN_DIR [--only kws,vww,resnet8,autoencoder] [--no-cycles]
#
# CMSIS_NN_DIR: a checkout of https://github.com/ARM-software/CMSIS-NN (TensorFlow Lite Micro
# pinned e096196a0c49f065abc03d943c583cd50de424ba from March 2025 to May 2026:
#   git clone https://github.com/ARM-software/CMSIS-NN && git -C CMSIS-NN checkout e096196a0c49).
#
# For each network firmware/cmsis-nn/extract.py reads the .tflite (with the flatbuffer schema of
# the ai-edge-litert package, in the virtual environment scripts/check.sh makes) and writes the
# weights and the parameters TFLM's kernels compute (per-channel multipliers and shifts, offsets,
# paddings, activation ranges, ADD's and SOFTMAX's rescaling) as C; firmware/cmsis-nn/harness.c
# runs each layer's CMSIS-NN call on QEMU's netduinoplus2 (Cortex-M4F) with -icount shift=0,
# reading TIM2 at 1 GHz around each call as the firmware counts, built with arm-none-eabi-gcc -O2
# -mcpu=cortex-m4 -mfloat-abi=hard -mfpu=fpv4-sp-d16 and newlib; with the cycle plugin
# (firmware/cycles/cycles.c) each call's estimated cycles too. The input is input 0 of
# data/mlperf's rule, and the output must equal TFLM's (data/mlperf/NAME.tflm) byte for byte.
# Interpreter overhead is not counted. CYCLES_PLUGIN_ARGS (e.g. refill=3) changes the cycle model
# as for firmware/cycles.sh. Needs arm-none-eabi-gcc (apt-get install
# gcc-arm-none-eabi), qemu-system-arm, cc and python3. Work files: firmware/target/cmsis-nn/.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

usage() { sed -n '2,20p' "$0"; }
cmsis=""
only="kws,vww,resnet8,autoencoder"
cycles=1
while [[ $# -gt 0 ]]; do
    case $1 in
        --only) only=$2; shift 2 ;;
        --no-cycles) cycles=0; shift ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "cmsis-nn-reference.sh: unknown option $1" >&2; exit 2 ;;
        *) cmsis=$1; shift ;;
    esac
done
if [[ -z $cmsis || ! -f $cmsis/Include/arm_nnfunctions.h ]]; then
    echo "cmsis-nn-reference.sh: give the path of a CMSIS-NN checkout (with Include/arm_nnfunctions.h)" >&2
    usage >&2
    exit 2
fi
cmsis=$(cd "$cmsis" && pwd)
for tool in arm-none-eabi-gcc qemu-system-arm python3; do
    if ! command -v "$tool" >/dev/null; then
        echo "cmsis-nn-reference.sh: $tool not found (apt-get install gcc-arm-none-eabi qemu-system-arm python3)" >&2
        exit 2
    fi
done

# The .tflite reader: ai-edge-litert's flatbuffer schema, in check.sh's virtual environment.
venv=${TINYCNN_LITERT_VENV:-$HOME/.cache/tinycnn/litert-venv}
if ! "$venv/bin/python" -c 'from ai_edge_litert import schema_py_generated' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --disable-pip-version-check --quiet \
        "ai-edge-litert==2.3.0" "numpy==2.4.6" "tflite-micro==0.dev20261023182759"
fi

here=$root/firmware/cmsis-nn
work=$root/firmware/target/cmsis-nn
version=$(git -C "$cmsis" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
gcc_version=$(arm-none-eabi-gcc -dumpversion)
flags=(-O2 -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 -ffunction-sections -fdata-sections)

# CMSIS-NN as a library, once per checkout and commit.
lib=$work/lib-$version/libcmsis-nn.a
if [[ ! -f $lib || $version == unknown ]]; then
    rm -rf "$work/lib-$version"
    mkdir -p "$work/lib-$version/obj"
    echo "building CMSIS-NN $version with arm-none-eabi-gcc $gcc_version ${flags[*]}" >&2
    for source in "$cmsis"/Source/*/*.c; do
        arm-none-eabi-gcc "${flags[@]}" -I"$cmsis/Include" -c "$source" \
            -o "$work/lib-$version/obj/$(basename "$(dirname "$source")")-$(basename "$source" .c).o"
    done
    arm-none-eabi-ar rcs "$lib" "$work/lib-$version"/obj/*.o
fi

plugin=""
if [[ $cycles -eq 1 ]]; then
    plugin=$("$root/firmware/cycles/build.sh")
fi

summaries=()
IFS=, read -ra names <<<"$only"
for name in "${names[@]}"; do
    model=$root/data/mlperf/$name.tflite
    if [[ ! -f $model ]]; then
        echo "cmsis-nn-reference.sh: $model not found" >&2
        exit 2
    fi
    seed=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['seed'])" "$root/data/mlperf/$name.json")
    dir=$work/$name
    mkdir -p "$dir"
    "$venv/bin/python" "$here/extract.py" "$model" "$dir/model.h" --name "$name" --input-seed "$seed" \
        --expected "$root/data/mlperf/$name.tflm" >&2
    arm-none-eabi-gcc "${flags[@]}" -Wall -Wextra -I"$cmsis/Include" -I"$dir" -nostartfiles \
        -T "$here/netduinoplus2.ld" -Wl,--gc-sections -o "$dir/harness.elf" \
        "$here/startup.c" "$here/harness.c" "$lib" -lc -lgcc
    run=(qemu-system-arm -machine netduinoplus2 -nographic -serial none -monitor none
        -semihosting-config enable=on,target=native -icount shift=0)
    if [[ -n $plugin ]]; then
        rm -f "$dir/intervals"
        # verify=1: the plugin computes the cycles twice and the report compares (cheap here).
        run+=(-plugin "$plugin,out=$dir/intervals,verify=1${CYCLES_PLUGIN_ARGS:+,$CYCLES_PLUGIN_ARGS}")
    fi
    set +e
    timeout 600 "${run[@]}" -kernel "$dir/harness.elf" </dev/null >"$dir/log" 2>&1
    status=$?
    set -e
    if [[ $status -ne 0 ]]; then
        cat "$dir/log" >&2
        echo "cmsis-nn-reference.sh: $name: the harness exited with status $status" >&2
        exit 1
    fi
    echo
    if [[ -n $plugin ]]; then
        python3 "$here/report.py" "$dir/log" "$dir/intervals" --name "$name" | tee "$dir/report"
    else
        python3 "$here/report.py" "$dir/log" --name "$name" | tee "$dir/report"
    fi
    summaries+=("$(grep '^summary ' "$dir/report")")
done

echo
echo "CMSIS-NN $version, arm-none-eabi-gcc $gcc_version -O2, Cortex-M4F (QEMU netduinoplus2), per inference:"
echo
printf '%s\n' "${summaries[@]}" | python3 -c '
import sys
print("| network | MACs | instructions | per MAC | est. cycles | per MAC |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
for line in sys.stdin:
    f = line.split()
    name, instructions, cycles, macs = f[1].rstrip(":"), int(f[3]), f[5], int(f[7])
    cycles = "-" if cycles == "-" else f"{int(cycles):,}"
    print(f"| {name} | {macs:,} | {instructions:,} | {f[9]} | {cycles} | {f[11]} |")
'
