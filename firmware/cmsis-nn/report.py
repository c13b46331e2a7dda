#!/usr/bin/env python3
"""Pairs the CMSIS-NN harness's per-layer instructions with the cycle plugin's intervals.

    report.py LOG [INTERVALS] [--name NAME]

LOG is what harness.c printed, INTERVALS what the cycle plugin
(../cycles/cycles.c) wrote in the same run. The harness reads the counter just
before and just after each CMSIS-NN call and prints the difference ("raw")
and that less an empty measurement's count; each layer's raw count must be
the instructions of one of the plugin's intervals, in order. The layer's
cycles are that interval's less the empty measurement's cycles. Without
INTERVALS, instructions only. Exits 1 if anything does not match.
"""

import argparse
import re
import sys

HEAD = re.compile(r"cmsis-nn (\S+): counter overhead (\d+); known loop of (\d+) instructions took (\d+) counts")
LAYER = re.compile(r"layer (\d+) (\S+) (\S+) macs (\d+) scratch (\d+) raw (\d+): (\d+) instructions(.*)$")
TOTAL = re.compile(r"total: (\d+) instructions per inference, (\d+) MACs")
VERIFY = re.compile(r"# verify: (\d+) intervals disagree")
PLUGIN = re.compile(r"# Cortex-M4 cycle estimate \(cycles.c: refill (\d+), divide (\d+)\)")


def fail(message):
    print(f"report.py: {message}", file=sys.stderr)
    sys.exit(1)


def ratio(a, b):
    return f"{a / b:.3f}" if b else "-"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("log")
    parser.add_argument("intervals", nargs="?")
    parser.add_argument("--name", default="")
    args = parser.parse_args()

    head, layers, total, output = None, [], None, []
    with open(args.log, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if m := HEAD.search(line):
                head = m
            elif m := LAYER.search(line):
                if m[8].strip():
                    fail(f"layer {m[1]}: {m[8].strip()}")
                layers.append({"index": int(m[1]), "op": m[2], "kernel": m[3], "macs": int(m[4]),
                               "raw": int(m[6]), "instructions": int(m[7])})
            elif m := TOTAL.search(line):
                total = (int(m[1]), int(m[2]))
            elif line.startswith("output: "):
                output.append(line[len("output: "):])
    if head is None or total is None or not layers:
        fail(f"{args.log}: the harness did not finish (no counter line, no layers or no total)")
    name = args.name or head[1]
    overhead = int(head[2])

    cycles = None
    refill = divide = None
    verified = False
    loop_line = ""
    if args.intervals:
        intervals = []
        with open(args.intervals) as f:
            for line in f:
                if m := PLUGIN.match(line):
                    refill, divide = int(m[1]), int(m[2])
                elif m := VERIFY.match(line):
                    if int(m[1]):
                        fail(f"{args.intervals}: {m[1]} intervals disagree with the plugin's verify=1 computation")
                    verified = True
                if not line.startswith("#"):
                    i, c, _ = line.split()
                    intervals.append((int(i), int(c)))
        if refill is None:
            fail(f"{args.intervals}: not written by the cycle plugin")
        counts = [i for i, _ in intervals]
        # The known loop (subs, bne: 2 instructions, 2 + refill cycles per iteration).
        expected_instructions = int(head[3])
        for k in range(len(intervals) - 4):
            if counts[k + 2] - counts[k] == expected_instructions and counts[k + 4] == counts[k + 2]:
                got = intervals[k + 2][1] - intervals[k][1]
                expected = expected_instructions // 2 * (2 + refill)
                loop_line = (f"known loop: {expected_instructions:,} instructions took {got:,} cycles, "
                             f"expected {expected:,}: {'ok' if got == expected else 'WRONG'}")
                if got != expected:
                    fail(loop_line)
                start = k + 5
                break
        else:
            fail("the known loop is not among the plugin's intervals")
        # The empty measurement's cycles: the smallest interval of `overhead` instructions before the loop.
        empty = min(c for i, c in intervals[:k] if i == overhead)
        cycles = []
        for layer in layers:
            for j in range(start, len(intervals)):
                if counts[j] == layer["raw"]:
                    cycles.append(intervals[j][1] - empty)
                    start = j + 1
                    break
            else:
                fail(f"layer {layer['index']}: no interval of the plugin has its {layer['raw']} instructions")

    macs = total[1]
    print(f"CMSIS-NN, {name}: {len(layers)} layers, {macs:,} MACs; " + ("; ".join(output) if output else "output not compared"))
    if cycles is not None:
        print(f"Cortex-M4 cycle model: zero wait states, refill {refill}, divide {divide}; {loop_line}")
        print(f"intervals: the plugin's instruction counts equal the harness's for all {len(layers)} layers")
        if verified:
            print("verify=1: every interval's cycles equal the instruction-by-instruction computation's")
    print()
    print("| layer | operator | CMSIS-NN function | MACs | instructions | per MAC | est. cycles | per MAC | cycles per instruction |")
    print("| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n, layer in enumerate(layers):
        c = cycles[n] if cycles is not None else None
        print(f"| {layer['index']} | {layer['op']} | {layer['kernel']} | {layer['macs']:,} | {layer['instructions']:,} | "
              f"{ratio(layer['instructions'], layer['macs'])} | {'-' if c is None else f'{c:,}'} | "
              f"{'-' if c is None else ratio(c, layer['macs'])} | {'-' if c is None else ratio(c, layer['instructions'])} |")
    instructions = total[0]
    all_cycles = sum(cycles) if cycles is not None else None
    print(f"| | **inference** | | {macs:,} | {instructions:,} | {ratio(instructions, macs)} | "
          f"{'-' if all_cycles is None else f'{all_cycles:,}'} | {'-' if all_cycles is None else ratio(all_cycles, macs)} | "
          f"{'-' if all_cycles is None else ratio(all_cycles, instructions)} |")
    print()
    print(f"summary {name}: instructions {instructions} cycles {all_cycles if all_cycles is not None else '-'} macs {macs} "
          f"instructions_per_mac {ratio(instructions, macs)} cycles_per_mac "
          f"{ratio(all_cycles, macs) if all_cycles is not None else '-'}")


if __name__ == "__main__":
    main()
