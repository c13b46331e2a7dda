#!/usr/bin/env python3
"""Pairs the firmware's instruction counts with the cycle plugin's intervals.

    report.py LOG INTERVALS [--images] [--name NAME]

LOG is the decoded log of `classify` (what `cargo run --release` prints),
INTERVALS the file the plugin (cycles.c) wrote for the same run: one line per
interval between two consecutive reads of the firmware's counter, with the
instructions and estimated cycles the plugin counted in it.

profile::classify reads the counter once at the start of an inference, twice
per step (when the step ends, and again after the observer), and once at the
end, so an inference of L steps is 2L+1 consecutive intervals: step j is
interval 2j, the observer's instructions the odd ones, and the firmware's
total is their sum. Each image's total in the log must equal the sum of such a
window of the plugin's intervals, and each step's mean over the images the
mean of its intervals: that is the check that the plugin counted exactly the
instructions the firmware counted. Exits 1 if anything does not match.
"""

import argparse
import re
import sys

IMAGE = re.compile(r"INFO\s+image (\d+): predicted .*, (\d+) counts$")
TOTAL = re.compile(r"INFO\s+([a-z0-9-]+): (\d+) instructions \(.*\) per inference \(min (\d+), max (\d+)\), [0-9.e+-]+ per MAC \((\d+) MACs\)")
STEP = re.compile(r"INFO\s+([a-z0-9-]+) (\S+): (\d+) per inference, [0-9.e+-]+ per MAC \((\d+) MACs\)")
LOOP = re.compile(r"known loop of (\d+) instructions took (\d+) counts")
MODEL = re.compile(r"INFO\s+model: (\d+) B at")
MACHINE = re.compile(r"INFO\s+machine: (.*)$")
VERIFY = re.compile(r"# verify: (\d+) intervals disagree")
HEADER = re.compile(r"# Cortex-M4 cycle estimate \(cycles.c: refill (\d+), divide (\d+)\)")


def fail(message):
    print(f"report.py: {message}", file=sys.stderr)
    sys.exit(1)


def grouped(n):
    return f"{n:,}"


def ratio(a, b):
    return f"{a / b:.3f}" if b else "-"


def read_log(path):
    log = {"images": [], "steps": [], "total": None, "loop": None, "machine": "?"}
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if m := IMAGE.search(line):
                log["images"].append((int(m[1]), int(m[2])))
            elif m := TOTAL.search(line):
                log["total"] = {"backend": m[1], "count": int(m[2]), "min": int(m[3]), "max": int(m[4]), "macs": int(m[5])}
            elif m := STEP.search(line):
                log["steps"].append({"name": m[2], "count": int(m[3]), "macs": int(m[4])})
            elif m := LOOP.search(line):
                log["loop"] = (int(m[1]), int(m[2]))
            elif m := MACHINE.search(line):
                log["machine"] = m[1]
    if not log["images"] or log["total"] is None or not log["steps"]:
        fail(f"{path}: no per-image counts, or no per-inference and per-step lines (did the run finish?)")
    return log


verified = []


def read_intervals(path):
    intervals, refill, divide = [], None, None
    with open(path) as f:
        for line in f:
            if line.startswith("#"):
                if m := HEADER.match(line):
                    refill, divide = int(m[1]), int(m[2])
                elif m := VERIFY.match(line):
                    if int(m[1]):
                        fail(f"{path}: {m[1]} intervals disagree with the plugin's verify=1 computation")
                    verified.append(True)
                continue
            instructions, cycles, pc = line.split()
            intervals.append((int(instructions), int(cycles), pc))
    if refill is None:
        fail(f"{path}: not written by the cycle plugin")
    return intervals, refill, divide


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("log")
    parser.add_argument("intervals")
    parser.add_argument("--images", action="store_true", help="a line per image, not only the mean")
    parser.add_argument("--name", default="", help="what was run, for the heading")
    args = parser.parse_args()

    log = read_log(args.log)
    intervals, refill, divide = read_intervals(args.intervals)
    steps = log["steps"]
    width = 2 * len(steps) + 1
    counts = [i for i, _, _ in intervals]
    sums = [0]
    for c in counts:
        sums.append(sums[-1] + c)

    # Each image's window: the first at or after the previous one's end whose
    # instructions add up to the image's count and whose reads come from the
    # same two places in every step.
    windows = []
    start = 0
    for image, total in log["images"]:
        found = None
        for q in range(start, len(intervals) - width + 1):
            if sums[q + width] - sums[q] != total:
                continue
            pcs_end = {intervals[q + 2 * j][2] for j in range(len(steps))}
            pcs_after = {intervals[q + 2 * j + 1][2] for j in range(len(steps))}
            if len(pcs_end) == 1 and len(pcs_after) == 1:
                found = q
                break
        if found is None:
            fail(f"image {image}: no {width} consecutive intervals of the plugin add up to the firmware's {total} instructions")
        windows.append(found)
        start = found + width

    # The counter's self-check: loops of SHORT and LONG iterations, measured
    # twice; their difference is `loop` instructions of `subs; bne`.
    loop_line = ""
    if log["loop"]:
        expected_instructions = log["loop"][0]
        expected_cycles = expected_instructions // 2 * (2 + refill)
        for k in range(0, windows[0] - 4):
            if counts[k + 2] - counts[k] == expected_instructions and counts[k + 4] == counts[k + 2]:
                got = intervals[k + 2][1] - intervals[k][1]
                repeat = intervals[k + 4][1] == intervals[k + 2][1]
                ok = got == expected_cycles and repeat
                loop_line = (f"known loop: {grouped(expected_instructions)} instructions (subs, bne taken) took "
                             f"{grouped(got)} cycles, expected {grouped(expected_cycles)} (1 + 1 + refill {refill} "
                             f"per iteration){'' if repeat else ', not repeatably'}: {'ok' if ok else 'WRONG'}")
                if not ok:
                    print(loop_line)
                    fail("the known loop's cycles are not the expected ones")
                break
        else:
            fail("the counter's self-check loop is not among the plugin's intervals")

    n = len(windows)
    step_instructions = [[counts[q + 2 * j] for q in windows] for j in range(len(steps))]
    step_cycles = [[intervals[q + 2 * j][1] for q in windows] for j in range(len(steps))]
    totals = [sums[q + width] - sums[q] for q in windows]
    total_cycles = [sum(intervals[q + k][1] for k in range(width)) for q in windows]
    mismatched = [s["name"] for j, s in enumerate(steps) if sum(step_instructions[j]) // n != s["count"]]
    if sum(totals) // n != log["total"]["count"]:
        mismatched.append("per inference")
    if mismatched:
        fail(f"the plugin's mean instructions differ from the firmware's for {', '.join(mismatched)}")

    macs = log["total"]["macs"]
    backend = log["total"]["backend"]
    mean_cycles = sum(total_cycles) // n
    mean_instructions = sum(totals) // n
    title = f"{args.name}: " if args.name else ""
    print(f"{title}{log['machine']}, {backend} kernels, {n} inferences; Cortex-M4 cycle model: "
          f"zero wait states, refill {refill}, divide {divide}")
    if loop_line:
        print(loop_line)
    if verified:
        print("verify=1: every interval's cycles equal the instruction-by-instruction computation's")
    print(f"intervals: the plugin's instruction counts equal the firmware's for all {n} inferences "
          f"and all {len(steps)} steps (each image's total, each step's mean)")
    print()
    print("| step | MACs | instructions | per MAC | est. cycles | per MAC | cycles per instruction |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for j, s in enumerate(steps):
        i = sum(step_instructions[j]) // n
        c = sum(step_cycles[j]) // n
        print(f"| {s['name']} | {grouped(s['macs'])} | {grouped(i)} | {ratio(i, s['macs'])} | {grouped(c)} | "
              f"{ratio(c, s['macs'])} | {ratio(c, i)} |")
    print(f"| **inference** | {grouped(macs)} | {grouped(mean_instructions)} | {ratio(mean_instructions, macs)} | "
          f"{grouped(mean_cycles)} | {ratio(mean_cycles, macs)} | {ratio(mean_cycles, mean_instructions)} |")
    print()
    print(f"per inference: instructions {grouped(mean_instructions)} (min {grouped(min(totals))}, max {grouped(max(totals))}), "
          f"estimated cycles {grouped(mean_cycles)} (min {grouped(min(total_cycles))}, max {grouped(max(total_cycles))})")
    if args.images:
        for (image, total), q, c in zip(log["images"], windows, total_cycles):
            print(f"image {image}: {total} instructions, {c} cycles")
    # One line for scripts and tables.
    print(f"summary {args.name or '-'}: instructions {mean_instructions} cycles {mean_cycles} macs {macs} "
          f"instructions_per_mac {ratio(mean_instructions, macs)} cycles_per_mac {ratio(mean_cycles, macs)}")


if __name__ == "__main__":
    main()
