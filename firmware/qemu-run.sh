#!/usr/bin/env bash
# Cargo runner for QEMU (see .cargo/config.toml): boots ELF on QEMU's MACHINE
# (netduinoplus2, mps2-an385, mps2-an386, mps2-an500, mps2-an505 or microbit),
# decodes the defmt frames the firmware writes to stdout over semihosting with
# defmt-print, and exits with the firmware's own exit status (0 = every check
# passed), or 124 if it did not finish within QEMU_TIMEOUT seconds (default
# 300).
#
# -icount shift=0 makes every guest instruction take exactly 1 ns of virtual
# time; the firmware's counter (TIM2 at 1 GHz, or the SysTick) then counts
# instructions.
#
# QEMU_PLUGIN=LIB[,ARG=VALUE...] adds -plugin LIB[,...] (cycles.sh sets it to
# the cycle-estimating plugin, cycles/cycles.c).
set -euo pipefail

if [[ $# -ne 2 ]]; then
    echo "usage: $0 MACHINE ELF (normally run by cargo as the runner)" >&2
    exit 2
fi
machine=$1
elf=$2
timeout_s=${QEMU_TIMEOUT:-300}

if [[ ! $timeout_s =~ ^[0-9]+([.][0-9]+)?$ ]]; then
    echo "$0: QEMU_TIMEOUT=$timeout_s is not a number of seconds" >&2
    exit 2
fi
if [[ ! -f $elf ]]; then
    echo "$0: $elf: no such firmware ELF" >&2
    exit 2
fi
if ! command -v qemu-system-arm >/dev/null; then
    echo "$0: qemu-system-arm not found; install it with: apt-get install qemu-system-arm" >&2
    exit 2
fi
if ! command -v defmt-print >/dev/null; then
    echo "$0: defmt-print not found; install it with: cargo install defmt-print --locked" >&2
    exit 2
fi

plugin=()
if [[ -n ${QEMU_PLUGIN:-} ]]; then
    plugin=(-plugin "$QEMU_PLUGIN")
fi

# -serial none -monitor none: with -nographic these would share stdout with
# the defmt stream and read the terminal; only semihosting may write there.
set +e
timeout --foreground --kill-after=10 "$timeout_s" \
    qemu-system-arm \
    -machine "$machine" \
    -nographic -serial none -monitor none \
    -semihosting-config enable=on,target=native \
    -icount shift=0 \
    "${plugin[@]}" \
    -kernel "$elf" </dev/null |
    defmt-print --show-skipped-frames -e "$elf"
statuses=("${PIPESTATUS[@]}")
set -e
firmware_status=${statuses[0]}
decoder_status=${statuses[1]}

if [[ $firmware_status -eq 124 || $firmware_status -eq 137 ]]; then
    echo "$0: $elf did not exit within ${timeout_s} s (QEMU_TIMEOUT); stopped" >&2
    exit 124
fi
if [[ $decoder_status -ne 0 ]]; then
    echo "$0: defmt-print failed (status $decoder_status): the log could not be decoded" >&2
    exit $((firmware_status != 0 ? firmware_status : 1))
fi
if [[ $firmware_status -eq 134 ]]; then
    # QEMU's message (above, on stderr) says why; with flip-link a stack
    # overflow ends this way: the fault cannot push its frame and locks up.
    echo "$0: QEMU aborted (status 134), e.g. on a CPU lockup after a stack overflow" >&2
elif [[ $firmware_status -ne 0 ]]; then
    echo "$0: firmware exited with status $firmware_status" >&2
fi
exit "$firmware_status"
