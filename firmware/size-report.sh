#!/usr/bin/env bash
# Prints the flash and static RAM a firmware ELF uses, from its section sizes.
# The peak stack is only known at run time: the firmware logs it at the end.
#
# usage: size-report.sh [ELF]   (default: the release `classify` binary;
#                                build it first with `cargo build --release`)
set -euo pipefail
cd "$(dirname "$0")"

elf=${1:-${CARGO_TARGET_DIR:-target}/thumbv7em-none-eabihf/release/classify}
if [[ ! -f $elf ]]; then
    echo "$0: $elf: no such ELF; build it first with: cargo build --release" >&2
    exit 2
fi

# llvm-size and llvm-nm from rustup's llvm-tools component first (matching
# rustc's LLVM), then any on PATH.
tool() {
    local name=$1 sysroot host
    if sysroot=$(rustc --print sysroot 2>/dev/null); then
        host=$(rustc -vV | sed -n 's/^host: //p')
        if [[ -x $sysroot/lib/rustlib/$host/bin/$name ]]; then
            echo "$sysroot/lib/rustlib/$host/bin/$name"
            return
        fi
    fi
    if command -v "$name" >/dev/null; then
        command -v "$name"
        return
    fi
    echo "$0: no $name found; install it with: rustup component add llvm-tools" >&2
    exit 2
}
size_tool=$(tool llvm-size)
nm_tool=$(tool llvm-nm)

# The part's flash and RAM, which build.rs wrote into memory.x as symbols.
part_size() {
    local value
    value=$("$nm_tool" "$elf" | awk -v name="$1" '$3 == name { print $1 }')
    if [[ -z $value ]]; then
        echo "$0: $elf has no symbol $1: build it with this firmware's build.rs" >&2
        exit 2
    fi
    echo $((16#$value))
}
FLASH_BYTES=$(part_size _tinycnn_flash_bytes)
RAM_BYTES=$(part_size _tinycnn_ram_bytes)

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
