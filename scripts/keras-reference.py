#!/usr/bin/env python3
"""The Keras peer that tinycnn's training is compared against.

It trains the Keras MNIST tutorial's network, the one `host train` trains by
default (`conv3x3:64 pool drop:0.5 conv3x3:128 pool drop:0.5 conv3x3:256 pool
drop:0.5 flatten dense:128 dense:64 dense:32 dense:10`), with the tutorial's
recipe, and times it:

- input 28x28x1, pixels scaled to [0, 1];
- three blocks of Conv2D 3x3 ('same' padding, ReLU) with 64, 128 and 256
  filters, each followed by MaxPooling2D 2x2 and Dropout 0.5;
- Flatten, Dense 128, 64 and 32 (ReLU), Dense 10 with softmax;
- categorical cross-entropy on one-hot labels;
- Adagrad with learning rate 0.01 and the accumulators starting at 0
  (`initial_accumulator_value=0.0`), epsilon 1e-7, which Keras 3 adds inside
  the square root: `theta -= lr * g / sqrt(sum(g^2) + eps)`. This is what the
  project's trainer calls "the Keras of the tutorial" (host/src/train/mod.rs,
  host/src/train/adagrad.rs). Note that these are not Keras's own defaults
  (learning rate 0.001, accumulators from 0.1); they are set explicitly here.
  `host train --adagrad-epsilon 1e-7` runs exactly this optimizer; `host
  train`'s default epsilon is 1e-6;
- Keras's default initialisers (Glorot-uniform weights, zero biases);
- batches of 128, the training set shuffled anew each epoch;
- the test set evaluated after every epoch (`validation_data`, in batches of
  128); one `fit` call for all the epochs.

Each epoch prints the wall seconds of its training (the first one includes
TensorFlow's tracing of the graph, as a first epoch in Keras does), the
training loss and accuracy Keras reports, the test loss and accuracy, and the
seconds of the evaluation and of training and evaluation together (what the
README's "one epoch (training + test evaluation)" compares). The last line of
output is one JSON object with the figures, for scripts: `seconds_per_epoch`
is training alone, `epoch_seconds_with_eval` includes the evaluation, and
`fit_seconds` is the whole `fit` call, which also pays once, after the last
epoch, for tearing down Keras's input pipeline (several seconds here).

The four files are read with numpy and gzip, raw or gzip-compressed, from the
directory given with --data (by default data/mnist in the repository, where
`cargo run --release --bin host -- data --download` puts them). Any data set
in MNIST's format with 28x28 grey images and labels 0-9 works, Fashion-MNIST
included.

A seed fixes the initial weights, the shuffles and the dropout masks; on one
machine with the same thread count, runs with the same seed have repeated
exactly, but TensorFlow does not promise it for its multithreaded CPU kernels.

The figures go to standard output. TensorFlow's own messages go to standard
error: its informational ones are turned off (TF_CPP_MIN_LOG_LEVEL=2 unless
set), but TensorFlow 2.21 prints its oneDNN notice while loading whatever the
level, so `2>/dev/null` gives a clean output.

Normally run through scripts/keras-reference.sh, which sets up a virtual
environment with the pinned TensorFlow first.
"""

import argparse
import gzip
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT / "data" / "mnist"

# The tutorial's recipe; see the module docstring.
BATCH_SIZE = 128
LEARNING_RATE = 0.01
INITIAL_ACCUMULATOR = 0.0
EPSILON = 1e-7
DROPOUT = 0.5
CLASSES = 10
SIDE = 28

# (name in the directory, number of dimensions the header must declare)
FILES = {
    "train_images": ("train-images-idx3-ubyte", 3),
    "train_labels": ("train-labels-idx1-ubyte", 1),
    "test_images": ("t10k-images-idx3-ubyte", 3),
    "test_labels": ("t10k-labels-idx1-ubyte", 1),
}

IDX_UBYTE = 0x08
GZIP_MAGIC = b"\x1f\x8b"


class DataError(Exception):
    """A data file that is missing or not what MNIST's format says."""


def find_file(data_dir: Path, name: str) -> Path:
    """`name` or `name.gz` in `data_dir`, whichever exists (the raw file first)."""
    for candidate in (data_dir / name, data_dir / (name + ".gz")):
        if candidate.is_file():
            return candidate
    raise DataError(f"{data_dir}: neither {name} nor {name}.gz is there")


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """One IDX file of unsigned bytes with `ndim` dimensions, checked against its header.

    Gzip is recognised by its magic bytes, whatever the file is called.
    """
    try:
        raw = path.read_bytes()
        if raw[:2] == GZIP_MAGIC:
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as err:
        # gzip.BadGzipFile is an OSError; a truncated stream raises EOFError.
        raise DataError(f"{path}: cannot read it: {err}") from err

    if len(raw) < 4:
        raise DataError(f"{path}: {len(raw)} bytes, too short for an IDX header")
    magic = int.from_bytes(raw[:4], "big")
    expected = (IDX_UBYTE << 8) | ndim
    if raw[0] != 0 or raw[1] != 0:
        raise DataError(
            f"{path}: magic number 0x{magic:08x} is not an IDX file's "
            f"(expected 0x{expected:08x}; is it another format?)"
        )
    if raw[2] != IDX_UBYTE:
        raise DataError(
            f"{path}: element type 0x{raw[2]:02x}, expected 0x08 (unsigned byte) "
            f"(magic number 0x{magic:08x}, expected 0x{expected:08x})"
        )
    if raw[3] != ndim:
        raise DataError(
            f"{path}: {raw[3]} dimensions, expected {ndim} "
            f"(magic number 0x{magic:08x}, expected 0x{expected:08x})"
        )

    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: {len(raw)} bytes, too short for a {ndim}-dimensional IDX header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(dims, dtype=np.int64))
    if len(raw) != header + size:
        shape = "x".join(str(d) for d in dims) + (f" = {size}" if ndim > 1 else "")
        raise DataError(
            f"{path}: the header declares {shape} bytes of data, but "
            f"{len(raw) - header} follow it (truncated or corrupt?)"
        )
    if size == 0:
        raise DataError(f"{path}: no data (shape {dims})")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def load_split(data_dir: Path, split: str):
    """Images as float32 N x 28 x 28 x 1 in [0, 1] and labels as int64 N, checked."""
    images_path = find_file(data_dir, FILES[f"{split}_images"][0])
    labels_path = find_file(data_dir, FILES[f"{split}_labels"][0])
    images = read_idx(images_path, FILES[f"{split}_images"][1])
    labels = read_idx(labels_path, FILES[f"{split}_labels"][1])

    if images.shape[1:] != (SIDE, SIDE):
        raise DataError(
            f"{images_path}: images of {images.shape[1]}x{images.shape[2]} pixels; "
            f"the tutorial's network takes {SIDE}x{SIDE}"
        )
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images)} images but {labels_path} "
            f"holds {len(labels)} labels"
        )
    if labels.max() >= CLASSES:
        raise DataError(
            f"{labels_path}: label {int(labels.max())} found; the network has {CLASSES} classes (0-9)"
        )
    x = (images.astype(np.float32) / 255.0).reshape(len(images), SIDE, SIDE, 1)
    return x, labels.astype(np.int64)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="keras-reference.py",
        description=(
            "Train the Keras MNIST tutorial's network (the default network of `host train`) "
            "with the tutorial's recipe: Adagrad (learning rate 0.01, accumulators from 0, "
            "epsilon 1e-7), categorical cross-entropy, batches of 128 shuffled each epoch, "
            "the test set evaluated after every epoch. Prints each epoch's training wall "
            "seconds and test loss and accuracy, then one JSON line with the figures."
        ),
        epilog=(
            "Usually run through scripts/keras-reference.sh, which creates a virtual "
            "environment with the pinned TensorFlow first. Example: "
            "bash scripts/keras-reference.sh --epochs 1 --data data/mnist"
        ),
    )
    parser.add_argument(
        "--data",
        metavar="DIR",
        type=Path,
        default=DEFAULT_DATA,
        help=(
            "directory with train-images-idx3-ubyte, train-labels-idx1-ubyte, "
            "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte, each raw or .gz "
            "(default: data/mnist in the repository, %(default)s)"
        ),
    )
    parser.add_argument(
        "--epochs", metavar="N", type=positive_int, default=1, help="epochs to train (default: %(default)s)"
    )
    parser.add_argument(
        "--seed",
        metavar="S",
        type=int,
        default=42,
        help="seed of the initial weights, shuffles and dropout masks (default: %(default)s, as host train)",
    )
    parser.add_argument(
        "--threads",
        metavar="N",
        type=positive_int,
        default=None,
        help="CPU threads for TensorFlow, within and between ops (default: TensorFlow's choice, all cores)",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="show Keras's progress bar while training"
    )
    return parser.parse_args(argv)


def build_model(keras):
    layers = keras.layers
    model = keras.Sequential(name="keras_mnist_tutorial")
    model.add(keras.Input(shape=(SIDE, SIDE, 1)))
    for filters in (64, 128, 256):
        model.add(layers.Conv2D(filters, (3, 3), padding="same", activation="relu"))
        model.add(layers.MaxPooling2D(pool_size=(2, 2)))
        model.add(layers.Dropout(DROPOUT))
    model.add(layers.Flatten())
    for units in (128, 64, 32):
        model.add(layers.Dense(units, activation="relu"))
    model.add(layers.Dense(CLASSES, activation="softmax"))
    model.compile(
        optimizer=keras.optimizers.Adagrad(
            learning_rate=LEARNING_RATE,
            initial_accumulator_value=INITIAL_ACCUMULATOR,
            epsilon=EPSILON,
        ),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def make_epoch_timer(keras, total_epochs):
    """A callback that times each epoch's training and test evaluation and prints them.

    Keras evaluates `validation_data` at the end of each epoch, between on_test_begin and
    on_test_end, before on_epoch_end: training is on_epoch_begin to on_test_begin.
    """

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epochs = []

        def on_epoch_begin(self, epoch, logs=None):
            self.began = time.perf_counter()
            self.cpu_began = time.process_time()
            self.tested = self.cpu_tested = None

        def on_test_begin(self, logs=None):
            # Also called by an evaluate() outside fit, where there is no epoch to time.
            if getattr(self, "began", None) is not None and self.tested is None:
                self.tested = time.perf_counter()
                self.cpu_tested = time.process_time()

        def on_epoch_end(self, epoch, logs=None):
            ended = time.perf_counter()
            logs = logs or {}
            tested = self.tested if self.tested is not None else ended
            cpu_tested = self.cpu_tested if self.cpu_tested is not None else time.process_time()
            record = {
                "epoch": epoch + 1,
                "train_seconds": round(tested - self.began, 3),
                "train_cpu_seconds": round(cpu_tested - self.cpu_began, 3),
                "eval_seconds": round(ended - tested, 3),
                "epoch_seconds": round(ended - self.began, 3),
                "train_loss": round(float(logs["loss"]), 6),
                "train_accuracy": round(float(logs["accuracy"]), 6),
                "test_loss": round(float(logs["val_loss"]), 6),
                "test_accuracy": round(float(logs["val_accuracy"]), 6),
            }
            self.epochs.append(record)
            self.began = None
            print(
                f"epoch {epoch + 1}/{total_epochs}: training {record['train_seconds']:.1f} s "
                f"(loss {record['train_loss']:.4f}, accuracy {100 * record['train_accuracy']:.2f} %), "
                f"test loss {record['test_loss']:.4f}, accuracy {100 * record['test_accuracy']:.2f} % "
                f"(evaluation {record['eval_seconds']:.1f} s, epoch with it {record['epoch_seconds']:.1f} s)",
                flush=True,
            )

    return EpochTimer()


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)

    # The data first: a missing file should not wait for TensorFlow to load.
    data_dir = args.data
    if not data_dir.is_dir():
        print(
            f"keras-reference.py: error: {data_dir} is not a directory; fetch MNIST with "
            "`cargo run --release --bin host -- data --download` (into data/mnist) "
            "or point --data at the four IDX files",
            file=sys.stderr,
        )
        return 1
    try:
        x_train, y_train = load_split(data_dir, "train")
        x_test, y_test = load_split(data_dir, "test")
    except DataError as err:
        print(f"keras-reference.py: error: {err}", file=sys.stderr)
        return 1
    print(
        f"data: {data_dir}: {len(x_train)} training and {len(x_test)} test images",
        flush=True,
    )

    # Keep TensorFlow's warnings and errors, not its informational messages.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import keras

    if args.threads is not None:
        # Must happen before TensorFlow runs its first op.
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    keras.utils.set_random_seed(args.seed)

    y_train_hot = keras.utils.to_categorical(y_train, CLASSES)
    y_test_hot = keras.utils.to_categorical(y_test, CLASSES)
    model = build_model(keras)
    print(
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, numpy {np.__version__}; "
        f"{model.count_params():,} parameters; batch {BATCH_SIZE}, Adagrad lr {LEARNING_RATE} "
        f"epsilon {EPSILON:g}, seed {args.seed}, threads "
        f"{args.threads if args.threads is not None else 'default'}",
        flush=True,
    )

    timer = make_epoch_timer(keras, args.epochs)
    fit_started = time.perf_counter()
    # One fit for all epochs, as a Keras user trains: calling fit once per epoch would add
    # the teardown of its input pipeline (seconds) to every epoch.
    model.fit(
        x_train,
        y_train_hot,
        batch_size=BATCH_SIZE,
        epochs=args.epochs,
        shuffle=True,
        validation_data=(x_test, y_test_hot),
        callbacks=[timer],
        verbose=1 if args.verbose else 0,
    )
    fit_seconds = time.perf_counter() - fit_started
    epochs_log = timer.epochs
    train_seconds = [e["train_seconds"] for e in epochs_log]
    final = epochs_log[-1]

    summary = {
        "peer": "keras-reference",
        "data": str(data_dir),
        "epochs": args.epochs,
        "seconds_per_epoch": train_seconds,
        "mean_seconds_per_epoch": round(sum(train_seconds) / len(train_seconds), 3),
        "epoch_seconds_with_eval": [e["epoch_seconds"] for e in epochs_log],
        "fit_seconds": round(fit_seconds, 3),
        "final_test_loss": final["test_loss"],
        "final_test_accuracy": final["test_accuracy"],
        "per_epoch": epochs_log,
        "seed": args.seed,
        "threads": args.threads,
        "batch_size": BATCH_SIZE,
        "learning_rate": LEARNING_RATE,
        "adagrad_epsilon": EPSILON,
        "parameters": int(model.count_params()),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
