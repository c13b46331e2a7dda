#!/usr/bin/env python3
"""Keras models converted by TensorFlow to fully-integer .tflite files, and what
TensorFlow Lite's reference kernels compute with them: the fixtures that
`tests/tests/tflite_models.rs` imports into tinycnn and compares byte for byte.

For each of its networks (the three of data/keras/README.md, or those named
with --only) it builds the same network in Keras (`conv3x3:64` is Conv2D 3x3 'same' with
ReLU, `pool` MaxPooling2D 2x2, `drop:0.5` Dropout, `flatten` Flatten,
`dense:128` Dense with ReLU, `:valid` and `:linear` as in tinycnn, the last
dense layer with softmax), trains it for --epochs on MNIST (seed 42, Adagrad
with learning rate 0.01 and accumulators from 0, batch 128: the tutorial's
recipe), converts it with TensorFlow's TFLiteConverter to
full int8 (int8 input and output, per-channel int8 weights, activations
calibrated on 1,000 training images scaled to [0, 1]), and runs TensorFlow
Lite's interpreter with its reference kernels (OpResolverType.BUILTIN_REF, so
no optimised kernel changes the arithmetic) on the 10,000 test images, each fed
as int8 p - 128. It writes into --out (default data/keras), per network NAME:

  NAME.tflite      the converted model
  NAME.logits      10,000 x classes int8: the input of the final SOFTMAX (the
                   logits, what the imported tinycnn model outputs), image by image
  NAME.json        the description, the tensor the logits were read from, the
                   test accuracy, the TensorFlow version

Normally run through scripts/keras-tflite.sh, which sets up the virtual
environment of scripts/keras-reference.sh.
"""

import argparse
import json
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = pathlib.Path(__file__).resolve().parent.parent

from mnist_idx import read_idx  # noqa: E402 (beside this script)

# The networks of the shipped fixtures (data/keras/README.md): the tutorial's,
# the small one of data/small/, and one with the other kinds of layers (5x5
# and 1x1 kernels, 'valid' padding, linear layers).
NETWORKS = {
    "reference": "conv3x3:64 pool drop:0.5 conv3x3:128 pool drop:0.5 conv3x3:256 pool drop:0.5 "
    "flatten dense:128 dense:64 dense:32 dense:10",
    "small": "conv3x3:16 pool conv3x3:32 pool conv3x3:64 pool drop:0.25 flatten dense:64 "
    "drop:0.25 dense:10",
    "mixed": "conv5x5:12:valid pool conv1x1:16:linear conv3x3:24 pool flatten dense:40:linear "
    "dense:10",
}


def build(keras, description, classes):
    """The Keras model of a tinycnn description (without its input word)."""
    layers = keras.layers
    model = keras.Sequential([keras.Input(shape=(28, 28, 1))])
    words = description.split()
    for position, word in enumerate(words):
        parts = word.split(":")
        last = position == len(words) - 1
        if parts[0].startswith("conv"):
            side = int(parts[0][4 : parts[0].index("x")])
            padding = "valid" if "valid" in parts[2:] else "same"
            activation = None if "linear" in parts[2:] else "relu"
            model.add(layers.Conv2D(int(parts[1]), (side, side), padding=padding, activation=activation))
        elif parts[0] == "pool":
            model.add(layers.MaxPooling2D(pool_size=(2, 2)))
        elif parts[0] == "drop":
            model.add(layers.Dropout(float(parts[1])))
        elif parts[0] == "flatten":
            model.add(layers.Flatten())
        elif parts[0] == "dense":
            if last:
                if int(parts[1]) != classes:
                    sys.exit(f"keras-tflite: the last layer must have {classes} units")
                model.add(layers.Dense(classes, activation="softmax"))
            else:
                activation = None if "linear" in parts[2:] else "relu"
                model.add(layers.Dense(int(parts[1]), activation=activation))
        else:
            sys.exit(f"keras-tflite: {word!r} is not a layer of the description grammar")
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=pathlib.Path, default=ROOT / "data" / "mnist")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "data" / "keras")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--only", action="append", choices=sorted(NETWORKS), help="one network (repeatable)")
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf
    import keras

    x_train = read_idx(args.data, "x_train", "keras-tflite")
    y_train = read_idx(args.data, "y_train", "keras-tflite")
    x_test = read_idx(args.data, "x_test", "keras-tflite")
    y_test = read_idx(args.data, "y_test", "keras-tflite")
    x_train_f = (x_train.astype(np.float32) / 255.0)[..., None]
    args.out.mkdir(parents=True, exist_ok=True)

    for name in args.only or list(NETWORKS):
        description = NETWORKS[name]
        keras.utils.set_random_seed(42)
        model = build(keras, description, 10)
        model.compile(
            # The tutorial's recipe, as scripts/keras-reference.py has it.
            optimizer=keras.optimizers.Adagrad(
                learning_rate=0.01, initial_accumulator_value=0.0, epsilon=1e-7
            ),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        model.fit(x_train_f, y_train, batch_size=128, epochs=args.epochs, verbose=0)

        def calibration():
            for image in x_train_f[:1000]:
                yield [image[None]]

        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = calibration
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        blob = converter.convert()
        tflite_path = args.out / f"{name}.tflite"
        tflite_path.write_bytes(blob)

        interpreter = tf.lite.Interpreter(
            model_content=blob,
            experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF,
            experimental_preserve_all_tensors=True,
        )
        interpreter.allocate_tensors()
        details = interpreter.get_input_details()[0]
        # The logits: the input of the final SOFTMAX.
        softmax = [op for op in interpreter._get_ops_details() if op["op_name"] == "SOFTMAX"][-1]
        logits_index = int(softmax["inputs"][0])
        logits = np.empty((len(x_test), 10), dtype=np.int8)
        for i, image in enumerate(x_test):
            interpreter.set_tensor(details["index"], (image.astype(np.int16) - 128).astype(np.int8)[None, ..., None])
            interpreter.invoke()
            logits[i] = interpreter.get_tensor(logits_index)[0]
        (args.out / f"{name}.logits").write_bytes(logits.tobytes())
        accuracy = float((logits.argmax(axis=1) == y_test).mean())
        summary = {
            "network": name,
            "description": description,
            "epochs": args.epochs,
            "tflite_bytes": len(blob),
            "logits_tensor": logits_index,
            "test_accuracy_int8": accuracy,
            "tensorflow": tf.__version__,
        }
        (args.out / f"{name}.json").write_text(json.dumps(summary, indent=2) + "\n")
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
