#!/usr/bin/env bash
# Prints the flash and static RAM a firmware ELF uses, from its section sizes.
# The peak stack is only known at run time: the firmware logs it at the end.
#
# usage: size-report.sh [ELF]   (default: the release `classify` binary;
#                                build it first with `cargo build --release`)
set -euo pipefail
cd "$(dirname "$0")"

FLASH_BYTES=$((1024 * 1024)) # memory.x: STM32F405/407
RAM_BYTES=$((128 * 1024))

elf=${1:-${CARGO_TARGET_DIR:-target}/thumbv7em-none-eabihf/release/classify}
if [[ ! -f $elf ]]; then
    echo "$0: $elf: no such ELF; build it first with: cargo build --release" >&2
    exit 2
fi

# llvm-size from rustup's llvm-tools component first (matches rustc's LLVM),
# then any llvm-size or arm-none-eabi-size on PATH.
size_tool=
if sysroot=$(rustc --print sysroot 2>/dev/null); then
    host=$(rustc -vV | sed -n 's/^host: //p')
    candidate=$sysroot/lib/rustlib/$host/bin/llvm-size
    [[ -x $candidate ]] && size_tool=$candidate
fi
if [[ -z $size_tool ]]; then
    size_tool=$(command -v llvm-size || command -v arm-none-eabi-size || true)
fi
if [[ -z $size_tool ]]; then
    echo "$0: no llvm-size found; install it with: rustup component add llvm-tools" >&2
    exit 2
fi

# `-A -d`: one line per section, "name size address", sizes in decimal.
"$size_tool" -A -d "$elf" | awk \
    -v elf="$elf" -v flash_total="$FLASH_BYTES" -v ram_total="$RAM_BYTES" '
    { size[$1] = $2 }
    END {
        text = size[".vector_table"] + size[".text"] + size[".gnu.sgstubs"]
        rodata = size[".rodata"]
        data = size[".data"]
        bss = size[".bss"]
        uninit = size[".uninit"]
        flash = text + rodata + data
        ram = data + bss + uninit
        printf "%s\n", elf
        printf "flash       %8d B  %5.1f%% of %d KiB  (text %d + rodata %d + data %d)\n",
            flash, 100 * flash / flash_total, flash_total / 1024, text, rodata, data
        printf "static RAM  %8d B  %5.1f%% of %d KiB  (data %d + bss %d + uninit %d)\n",
            ram, 100 * ram / ram_total, ram_total / 1024, data, bss, uninit
        printf "stack room  %8d B  (the rest of RAM; the firmware logs its peak use)\n",
            ram_total - ram
    }'
