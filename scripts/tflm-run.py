#!/usr/bin/env python3
"""Runs a fully-integer .tflite with TensorFlow Lite Micro (PyPI `tflite-micro`, its
reference kernels: the arithmetic a microcontroller runs) on int8 inputs and writes
what it outputs, for tests/tests/tflite_models.rs.

  tflm-run.py MODEL.tflite --inputs FILE --out FILE [--arena BYTES]

FILE holds the int8 input tensors one after another (each as many bytes as the
model's input tensor has values, in its NHWC order); each is fed as it is, one at
a time, and --out receives the graph's int8 output for each, output after output.
"""

import argparse
import pathlib
import sys


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=pathlib.Path)
    parser.add_argument("--inputs", type=pathlib.Path, required=True)
    parser.add_argument("--out", type=pathlib.Path, required=True)
    parser.add_argument("--arena", type=int, default=4 << 20, help="arena bytes (default 4 MiB)")
    args = parser.parse_args()

    import numpy as np

    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        sys.exit("tflm-run: tflite-micro is not installed (pip install --pre tflite-micro)")
    interpreter = runtime.Interpreter.from_file(str(args.model), arena_size=args.arena)
    details = interpreter.get_input_details(0)
    shape = [int(d) for d in details["shape"]]
    size = int(np.prod(shape))
    data = np.frombuffer(args.inputs.read_bytes(), dtype=np.int8)
    if data.size % size != 0:
        sys.exit(f"tflm-run: {args.inputs}: {data.size} bytes is not a whole number of {size}-byte inputs")
    outputs = []
    for start in range(0, data.size, size):
        interpreter.set_input(data[start : start + size].reshape(shape), 0)
        interpreter.invoke()
        outputs.append(np.asarray(interpreter.get_output(0), dtype=np.int8).reshape(-1))
    args.out.write_bytes(np.concatenate(outputs).tobytes() if outputs else b"")


if __name__ == "__main__":
    main()
