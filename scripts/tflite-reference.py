#!/usr/bin/env python3
"""The TensorFlow Lite peer that `host bench infer` compares the tinycnn core with.

It builds the Keras MNIST tutorial's network (the one `host train` trains by
default), trains it for one epoch on the first --train-images training images
(the speed of a network does not depend on its weights, and a trained network
gives the int8 converter realistic ranges), converts it to a float TensorFlow
Lite model and to a fully-integer one (int8 activations calibrated on 1,000
training images, per-channel int8 weights), and times TensorFlow Lite's
interpreter on one image at a time with one thread, as `host bench infer`
times the core: the median of --repeats calls of `invoke` on a test image,
after 20 unmeasured ones. The interpreter runs with its default kernels
(XNNPACK for f32), the fast ones a user would get.

It prints one JSON object and writes it to --out (by default
runs/tflite-reference.json in the repository, where `host bench infer` looks
for it): microseconds per image for f32 and int8, the int8 model's test
accuracy, the models' sizes and the TensorFlow version. The .tflite files are
written beside it.

Normally run through scripts/tflite-reference.sh, which sets up the same
virtual environment as scripts/keras-reference.sh.

With --model FILE.tflite it times that model instead (any fully-integer
.tflite, such as data/mlperf/*.tflite), nothing trained: TensorFlow Lite's
interpreter with its default kernels (XNNPACK) on one thread, one input at a
time, on --images random int8 inputs (splitmix64 bytes of --seed, the stream
of data/mlperf/README.md, which `host bench infer --model` feeds the core
too), --rounds times over, after 20 unmeasured calls. Only `invoke` is timed;
each input is set before its call. It prints one JSON object (median
microseconds per input, images per second, the runtime) and writes it to
--out if given. This needs only ai-edge-litert (or TensorFlow): any Python
with it can run this file directly. With --serve it times on request
instead: it answers each line `time` on its standard input with one JSON line
of the microseconds of each of the --images inputs, so that `host bench
infer --model M.tcnn --tflite-model M.tflite` can alternate rounds of the
core and of TensorFlow Lite in one run.
"""

import argparse
import json
import os
import pathlib
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = pathlib.Path(__file__).resolve().parent.parent

from mnist_idx import read_idx  # noqa: E402 (beside this script)
def network(keras):
    layers = [keras.Input((28, 28, 1))]
    for filters in (64, 128, 256):
        layers += [
            keras.layers.Conv2D(filters, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Dropout(0.5),
        ]
    layers += [keras.layers.Flatten()]
    layers += [keras.layers.Dense(units, activation="relu") for units in (128, 64, 32)]
    layers += [keras.layers.Dense(10, activation="softmax")]
    return keras.Sequential(layers)


SPLITMIX_GAMMA = 0x9E3779B97F4A7C15


def splitmix_bytes(seed, count):
    """`count` int8 values, each the top byte of one splitmix64 output of the stream seeded with
    `seed` (data/mlperf/README.md; host's `fixture::splitmix_bytes`)."""
    import numpy as np

    with np.errstate(over="ignore"):
        state = np.uint64(seed) + np.arange(1, count + 1, dtype=np.uint64) * np.uint64(SPLITMIX_GAMMA)
        z = (state ^ (state >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(56)).astype(np.uint8).view(np.int8)


def interpreter_class():
    """TensorFlow Lite's interpreter and a name for it: ai-edge-litert's, else TensorFlow's."""
    try:
        from ai_edge_litert import interpreter as litert
        from importlib import metadata

        return litert.Interpreter, f"ai-edge-litert {metadata.version('ai-edge-litert')}"
    except ImportError:
        pass
    import tensorflow as tf

    return tf.lite.Interpreter, f"tensorflow {tf.__version__} (tf.lite)"


def time_model(args):
    """--model: TensorFlow Lite's default kernels on one thread, random int8 inputs."""
    import numpy as np

    Interpreter, runtime = interpreter_class()
    it = Interpreter(model_path=str(args.model), num_threads=1)
    it.allocate_tensors()
    source = it.get_input_details()[0]
    if source["dtype"] != np.int8:
        sys.exit(f"tflite-reference: {args.model}: input {source['dtype']}: int8 expected")
    shape = tuple(int(d) for d in source["shape"])
    size = int(np.prod(shape))
    inputs = splitmix_bytes(args.seed, args.images * size).reshape((args.images,) + shape)

    def one_round():
        times = []
        for x in inputs:
            it.set_tensor(source["index"], x)
            started = time.perf_counter()
            it.invoke()
            times.append(time.perf_counter() - started)
        return [t * 1e6 for t in times]

    for k in range(20):
        it.set_tensor(source["index"], inputs[k % len(inputs)])
        it.invoke()
    if args.serve:
        print(json.dumps({"runtime": runtime, "input_values": size}), flush=True)
        for line in sys.stdin:
            if line.strip() == "time":
                print(json.dumps({"us": [round(t, 3) for t in one_round()]}), flush=True)
        return
    rounds = [one_round() for _ in range(args.rounds)]
    every = [t for r in rounds for t in r]
    figures = {
        "model": str(args.model),
        "runtime": runtime,
        "machine": platform.machine(),
        "threads": 1,
        "images": args.images,
        "rounds": args.rounds,
        "seed": args.seed,
        "tflite_int8_us_per_image": round(float(np.median(every)), 2),
        "images_per_second": round(len(every) / (sum(every) / 1e6), 1),
        "images_per_second_per_round": [round(len(r) / (sum(r) / 1e6), 1) for r in rounds],
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=pathlib.Path,
                        help="time this fully-integer .tflite on random int8 inputs instead")
    parser.add_argument("--images", type=int, default=200,
                        help="--model: random inputs per round (default 200)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="--model: rounds over the inputs (default 5)")
    parser.add_argument("--seed", type=int, default=0x74636E6E,
                        help="--model: seed of the inputs' splitmix64 stream (default host's 0x74636e6e)")
    parser.add_argument("--serve", action="store_true",
                        help="--model: time a round for each line `time` on standard input")
    parser.add_argument("--data", type=pathlib.Path, default=ROOT / "data" / "mnist",
                        help="the four MNIST IDX files, raw or .gz (default: data/mnist)")
    parser.add_argument("--out", type=pathlib.Path,
                        help="where to write the figures (default: runs/tflite-reference.json; "
                        "with --model, nowhere)")
    parser.add_argument("--train-images", type=int, default=5000,
                        help="training images of the one epoch (default 5000)")
    parser.add_argument("--repeats", type=int, default=300,
                        help="timed calls per model (default 300)")
    args = parser.parse_args()
    if args.model is not None:
        if args.images < 1 or args.rounds < 1:
            parser.error("--images and --rounds must be at least 1")
        return time_model(args)
    if args.out is None:
        args.out = ROOT / "runs" / "tflite-reference.json"
    if args.train_images < 1 or args.repeats < 1:
        parser.error("--train-images and --repeats must be at least 1")

    import numpy as np
    import tensorflow as tf
    import keras

    x_train = read_idx(args.data, "x_train", "tflite-reference")[..., None].astype(np.float32) / 255.0
    y_train = read_idx(args.data, "y_train", "tflite-reference")
    x_test = read_idx(args.data, "x_test", "tflite-reference")[..., None].astype(np.float32) / 255.0
    y_test = read_idx(args.data, "y_test", "tflite-reference")

    keras.utils.set_random_seed(42)
    model = network(keras)
    model.compile(optimizer=keras.optimizers.Adagrad(0.01, initial_accumulator_value=0.0),
                  loss="sparse_categorical_crossentropy")
    model.fit(x_train[: args.train_images], y_train[: args.train_images], batch_size=128,
              epochs=1, verbose=0)

    def calibration():
        for i in range(1000):
            yield [x_train[i : i + 1]]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = calibration
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    int8_model = converter.convert()
    f32_model = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    (args.out.parent / "tflite-reference-int8.tflite").write_bytes(int8_model)
    (args.out.parent / "tflite-reference-f32.tflite").write_bytes(f32_model)

    def interpreter(blob):
        it = tf.lite.Interpreter(model_content=blob, num_threads=1)
        it.allocate_tensors()
        return it, it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]

    int8, int8_in, int8_out = interpreter(int8_model)
    scale, zero_point = int8.get_input_details()[0]["quantization"]
    x_int8 = np.clip(np.round(x_test / scale + zero_point), -128, 127).astype(np.int8)
    correct = 0
    for k in range(len(x_test)):
        int8.set_tensor(int8_in, x_int8[k : k + 1])
        int8.invoke()
        correct += int(int8.get_tensor(int8_out).argmax() == y_test[k])
    f32, f32_in, _ = interpreter(f32_model)

    def median_us(it, index, image):
        it.set_tensor(index, image)
        for _ in range(20):
            it.invoke()
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            it.invoke()
            times.append(time.perf_counter() - started)
        return round(float(np.median(times)) * 1e6, 1)

    figures = {
        "tensorflow": tf.__version__,
        "machine": platform.machine(),
        "threads": 1,
        "tflite_int8_us_per_image": median_us(int8, int8_in, x_int8[:1]),
        "tflite_f32_us_per_image": median_us(f32, f32_in, x_test[:1]),
        "int8_test_accuracy": correct / len(x_test),
        "trained_on_images": args.train_images,
        "int8_bytes": len(int8_model),
        "f32_bytes": len(f32_model),
    }
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
