#!/usr/bin/env python3
"""Runs a fully-integer .tflite with TensorFlow Lite's reference kernels on MNIST
test images and writes what it outputs, for tests/tests/tflite_models.rs.

  tflite-run.py MODEL.tflite --data DIR --out FILE [--skip K] [--limit N]

Each test image (28x28 bytes) is fed as int8 p - 128 (the input quantisation
of tinycnn's int8 models: scale 1/255, zero point -128), one at a time; FILE
receives the graph's int8 output for every image, image after image (from
test image K on, N of them: runs of one model can share the work). The
interpreter is ai-edge-litert's (the TensorFlow Lite runtime on PyPI) or, if
that is not installed, TensorFlow's, always with OpResolverType.BUILTIN_REF:
the reference kernels, whose arithmetic tinycnn matches bit for bit (the
default optimised kernels may round differently).
"""

import argparse
import pathlib
import sys

from mnist_idx import read_idx  # beside this script


def interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        return Interpreter, OpResolverType
    except ImportError:
        pass
    try:
        import tensorflow as tf

        return tf.lite.Interpreter, tf.lite.experimental.OpResolverType
    except ImportError:
        sys.exit("tflite-run: neither ai-edge-litert nor tensorflow is installed (pip install ai-edge-litert)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=pathlib.Path)
    parser.add_argument("--data", type=pathlib.Path, required=True)
    parser.add_argument("--out", type=pathlib.Path, required=True)
    parser.add_argument("--skip", type=int, default=0)
    parser.add_argument("--limit", type=int)
    args = parser.parse_args()

    import numpy as np

    Interpreter, OpResolverType = interpreter_class()
    interpreter = Interpreter(
        model_path=str(args.model), experimental_op_resolver_type=OpResolverType.BUILTIN_REF
    )
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]
    sink = interpreter.get_output_details()[0]
    if source["dtype"] != np.int8 or sink["dtype"] != np.int8:
        sys.exit(f"tflite-run: {args.model}: input {source['dtype']}, output {sink['dtype']}: int8 expected")
    images = read_idx(args.data, "x_test", "tflite-run")[..., None][args.skip :]
    images = images[: args.limit]
    outputs = np.empty((len(images), int(np.prod(sink["shape"]))), dtype=np.int8)
    for i, image in enumerate(images):
        interpreter.set_tensor(source["index"], (image.astype(np.int16) - 128).astype(np.int8)[None])
        interpreter.invoke()
        outputs[i] = interpreter.get_tensor(sink["index"]).reshape(-1)
    args.out.write_bytes(outputs.tobytes())
    return 0


if __name__ == "__main__":
    sys.exit(main())
