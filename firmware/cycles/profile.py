#!/usr/bin/env python3
"""Sums a cycles.c profile (profile=PATH) per function of the firmware's ELF.

    cycles/profile.py PROFILE ELF [--top N] [--lines FUNCTION]

Prints each function's executed instructions and cycles (the per-instruction
costs before pipelining and refills, so a little above cycles.sh's estimate),
most cycles first, over the whole run (every image, both backends where the
binary runs both). --lines FUNCTION prints that function's instructions, one
line per address, beside llvm-objdump's disassembly.
"""
import argparse
import bisect
import collections
import pathlib
import subprocess
import sys


def tool(name):
    sysroot = subprocess.run(["rustc", "--print", "sysroot"], capture_output=True, text=True,
                             check=True).stdout.strip()
    found = list(pathlib.Path(sysroot).glob(f"lib/rustlib/*/bin/{name}"))
    if not found:
        sys.exit(f"profile.py: no {name}; rustup component add llvm-tools")
    return str(found[0])


def functions(elf):
    """Sorted (start, end, name) of the ELF's function symbols."""
    out = subprocess.run([tool("llvm-nm"), "-C", "-S", "--defined-only", elf], capture_output=True,
                         text=True, check=True).stdout
    symbols = []
    for line in out.splitlines():
        parts = line.split(None, 3)
        if len(parts) == 4 and parts[2] in "tT":
            start = int(parts[0], 16) & ~1
            symbols.append((start, start + int(parts[1], 16), parts[3]))
    symbols.sort()
    return symbols


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile")
    parser.add_argument("elf")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--lines", metavar="FUNCTION")
    args = parser.parse_args()
    per_address = collections.Counter()
    cost = {}
    for line in open(args.profile):
        if line.startswith("#"):
            continue
        address, count, cycles = line.split()
        address = int(address, 16)
        per_address[address] += int(count)
        cost[address] = int(cycles)
    symbols = functions(args.elf)
    starts = [s for s, _, _ in symbols]

    def owner(address):
        i = bisect.bisect_right(starts, address) - 1
        if i >= 0 and address < symbols[i][1]:
            return symbols[i][2]
        return "?"

    if args.lines:
        match = [s for s in symbols if args.lines in s[2]]
        if not match:
            sys.exit(f"profile.py: no function matches {args.lines}")
        start, end, name = match[0]
        dump = subprocess.run([tool("llvm-objdump"), "-d", "--no-show-raw-insn",
                               f"--start-address={start}", f"--stop-address={end}", args.elf],
                              capture_output=True, text=True, check=True).stdout
        print(name)
        for line in dump.splitlines():
            head = line.strip().split(":", 1)
            try:
                address = int(head[0], 16)
            except ValueError:
                continue
            count = per_address.get(address, 0)
            print(f"{count:>12,} {count * cost.get(address, 0):>12,}  {line.strip()}")
        return
    totals = collections.defaultdict(lambda: [0, 0])
    for address, count in per_address.items():
        total = totals[owner(address)]
        total[0] += count
        total[1] += count * cost[address]
    all_instructions = sum(t[0] for t in totals.values())
    all_cycles = sum(t[1] for t in totals.values())
    print(f"{'instructions':>14} {'cycles':>14} {'share':>6}  function")
    for name, (instructions, cycles) in sorted(totals.items(), key=lambda kv: -kv[1][1])[:args.top]:
        print(f"{instructions:>14,} {cycles:>14,} {100 * cycles / all_cycles:>5.1f}%  {name}")
    print(f"{all_instructions:>14,} {all_cycles:>14,} 100.0%  (all)")


if __name__ == "__main__":
    main()
