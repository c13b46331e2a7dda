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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=pathlib.Path, default=ROOT / "data" / "mnist",
                        help="the four MNIST IDX files, raw or .gz (default: data/mnist)")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "runs" / "tflite-reference.json",
                        help="where to write the figures (default: runs/tflite-reference.json)")
    parser.add_argument("--train-images", type=int, default=5000,
                        help="training images of the one epoch (default 5000)")
    parser.add_argument("--repeats", type=int, default=300,
                        help="timed calls per model (default 300)")
    args = parser.parse_args()
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
