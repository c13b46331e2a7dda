#!/usr/bin/env python3
"""The four MLPerf Tiny reference networks in full int8, and what TensorFlow Lite
Micro and TensorFlow Lite's reference kernels compute with them on random inputs:
fixtures for tinycnn's import of .tflite files (data/mlperf/README.md).

For each network (kws, vww, resnet8, autoencoder, or those named with --only)
it builds the network of its tinycnn description (NETWORKS below) in Keras, the
way the MLPerf Tiny reference models have it: every convolution, depthwise
convolution and dense layer followed by BatchNormalization (momentum 0.9) and
its activation, except the final dense layer; a `residual:F:s2` shortcut is a
1x1 Conv2D of stride 2 without batch normalisation, as in MLPerf Tiny's
ResNet-8. It trains the network briefly (seed 42, Adam 1e-3, batch 32, on
inputs uniform in [-1, 1) (kws, autoencoder) or [0, 1) (vww, resnet8, like
images), labels the argmax of a fixed random linear projection of the input;
the autoencoder reconstructs its input), so that the weights and the
batch-norm moving statistics are far from their initial values, converts a
copy with a static batch of 1 (else Flatten becomes SHAPE, STRIDED_SLICE,
PACK, RESHAPE) with TensorFlow's TFLiteConverter to full int8 (optimizations
DEFAULT, 200 calibration inputs of the same distribution, TFLITE_BUILTINS_INT8,
int8 input and output) and checks that the graph holds only CONV_2D,
DEPTHWISE_CONV_2D, AVERAGE_POOL_2D, ADD, RESHAPE, FULLY_CONNECTED and SOFTMAX.

It then makes --count random int8 input tensors (splitmix64, see
data/mlperf/README.md; the seed is in NETWORKS and NAME.json), runs each
through TensorFlow Lite Micro's Python interpreter (tflite-micro, reference
kernels) and through ai-edge-litert's interpreter with
OpResolverType.BUILTIN_REF, and writes into --out (default data/mlperf):

  NAME.tflite   the converted model
  NAME.tflm     count x outputs int8: the graph's output (the softmax's output,
                or the autoencoder's 640 values) by TensorFlow Lite Micro,
                input after input
  NAME.litert   the same by ai-edge-litert (BUILTIN_REF)
  NAME.json     description, quantisation of input and output, MACs,
                parameters, seed, count, op list, .tflite size, the smallest
                TFLM arena, versions, and how many outputs differ between
                TFLM and litert

With --keras-tflm it does instead the TensorFlow Lite Micro side of
data/keras/: for each of reference, small and mixed it runs --keras-dir/NAME.tflite
(default data/keras) through TensorFlow Lite Micro on the 10,000 MNIST test
images of --data (fed as int8 p - 128) and writes --keras-dir/NAME.tflm:
10,000 x 10 int8, the model's output (the final SOFTMAX's output), image after
image. It runs ai-edge-litert (BUILTIN_REF) on the same images, prints per
model how many images (and bytes) differ between the two, and checks that
litert's softmax input still equals NAME.logits.

Normally run through scripts/mlperf-tiny.sh, which sets up the virtual
environment of scripts/keras-reference.sh and adds tflite-micro and
ai-edge-litert to it.
"""

import argparse
import contextlib
import json
import os
import pathlib
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

# name: (description in tinycnn's text form, seed of the test inputs, range of the float inputs
# of training and calibration, training inputs, epochs)
NETWORKS = {
    "kws": (
        "input:49x10x1 conv10x4:64:s2 dw3x3 conv1x1:64 dw3x3 conv1x1:64 dw3x3 conv1x1:64 "
        "dw3x3 conv1x1:64 avgpool25x5 flatten dense:12:linear softmax",
        0x4B5753,
        (-1.0, 1.0),
        4096,
        4,
    ),
    "vww": (
        "input:96x96x3 conv3x3:8:s2 dw3x3 conv1x1:16 dw3x3:s2 conv1x1:32 dw3x3 conv1x1:32 "
        "dw3x3:s2 conv1x1:64 dw3x3 conv1x1:64 dw3x3:s2 conv1x1:128 dw3x3 conv1x1:128 "
        "dw3x3 conv1x1:128 dw3x3 conv1x1:128 dw3x3 conv1x1:128 dw3x3 conv1x1:128 "
        "dw3x3:s2 conv1x1:256 dw3x3 conv1x1:256 avgpool3x3 flatten dense:2:linear softmax",
        0x565757,
        (0.0, 1.0),
        2048,
        2,
    ),
    "resnet8": (
        "input:32x32x3 conv3x3:16 residual conv3x3:16 conv3x3:16:linear add "
        "residual:32:s2 conv3x3:32:s2 conv3x3:32:linear add "
        "residual:64:s2 conv3x3:64:s2 conv3x3:64:linear add "
        "avgpool8x8 flatten dense:10:linear softmax",
        0x524E38,
        (0.0, 1.0),
        4096,
        3,
    ),
    "autoencoder": (
        "input:640 dense:128 dense:128 dense:128 dense:128 dense:8 dense:128 dense:128 "
        "dense:128 dense:128 dense:640:linear output:values",
        0x4145,
        (-1.0, 1.0),
        4096,
        5,
    ),
}

ALLOWED_OPS = {
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "AVERAGE_POOL_2D",
    "ADD",
    "RESHAPE",
    "FULLY_CONNECTED",
    "SOFTMAX",
}

CALIBRATION = 200
KERAS_NETWORKS = ("reference", "small", "mixed")

MASK64 = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15


def splitmix64_reference(seed, n):
    """The first n outputs of splitmix64 seeded with `seed`, in plain Python (the definition)."""
    state = seed & MASK64
    out = []
    for _ in range(n):
        state = (state + GAMMA) & MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        out.append(z ^ (z >> 31))
    return out


def random_inputs(np, seed, size, first, count):
    """Test inputs first .. first+count-1 (each `size` int8 bytes) of the stream of `seed`:
    byte j of the stream is the top 8 bits of splitmix64's output j+1, as int8."""
    start = first * size
    k = np.arange(start + 1, start + count * size + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + k * np.uint64(GAMMA)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(56)).astype(np.uint8).view(np.int8).reshape(count, size)


def check_prng(np):
    # splitmix64's published first output for seed 0.
    assert splitmix64_reference(0, 1)[0] == 0xE220A8397B1DCDAF
    for seed in (0, 12345, MASK64):
        expected = [v >> 56 for v in splitmix64_reference(seed, 64)]
        got = random_inputs(np, seed, 16, 0, 4).view(np.uint8).reshape(-1).tolist()
        assert got == expected, (seed, got, expected)
        got = random_inputs(np, seed, 16, 2, 2).view(np.uint8).reshape(-1).tolist()
        assert got == expected[32:], seed


def shape_of(word):
    return [int(v) for v in word.split(":")[1].split("x")]


def build(keras, description, batch_size=None):
    """The Keras model of a tinycnn description, with batch normalisation after every
    convolution and every dense layer but the last, as the MLPerf Tiny models have it."""
    layers = keras.layers
    words = description.split()
    if not words[0].startswith("input:"):
        sys.exit("mlperf-tiny: a description starts with input:")
    inputs = keras.Input(shape=tuple(shape_of(words[0])), batch_size=batch_size)
    x = inputs
    dense_positions = [i for i, w in enumerate(words) if w.startswith("dense:")]
    shortcut = None

    def activate(x, options):
        if "relu6" in options:
            return layers.ReLU(max_value=6.0)(x)
        if "linear" in options:
            return x
        return layers.ReLU()(x)

    def bn(x):
        return layers.BatchNormalization(momentum=0.9)(x)

    for position, word in enumerate(words[1:], start=1):
        parts = word.split(":")
        head = parts[0]
        if head.startswith("conv") or head.startswith("dw"):
            depthwise = head.startswith("dw")
            kh, kw = (int(v) for v in head[2 if depthwise else 4 :].split("x"))
            options = parts[1:] if depthwise else parts[2:]
            strides = (1, 1)
            for option in options:
                if option == "s2":
                    strides = (2, 2)
                elif option.startswith("s") and "x" in option:
                    strides = tuple(int(v) for v in option[1:].split("x"))
            padding = "valid" if "valid" in options else "same"
            if depthwise:
                x = layers.DepthwiseConv2D((kh, kw), strides=strides, padding=padding)(x)
            else:
                x = layers.Conv2D(int(parts[1]), (kh, kw), strides=strides, padding=padding)(x)
            x = activate(bn(x), options)
        elif head.startswith("avgpool") or head.startswith("maxpool"):
            ph, pw = (int(v) for v in head[7:].split("x"))
            strides = (2, 2) if "s2" in parts[1:] else None
            padding = "same" if "same" in parts[1:] else "valid"
            kind = layers.AveragePooling2D if head.startswith("avg") else layers.MaxPooling2D
            x = kind(pool_size=(ph, pw), strides=strides, padding=padding)(x)
        elif head == "residual":
            if len(parts) > 1:
                strides = (2, 2) if "s2" in parts[2:] else (1, 1)
                # MLPerf Tiny's ResNet-8: the projection shortcut has no batch normalisation.
                shortcut = layers.Conv2D(int(parts[1]), (1, 1), strides=strides, padding="same")(x)
            else:
                shortcut = x
        elif head == "add":
            x = layers.Add()([shortcut, x])
            x = activate(x, parts[1:])
            shortcut = None
        elif head == "flatten":
            x = layers.Flatten()(x)
        elif head == "dense":
            x = layers.Dense(int(parts[1]))(x)
            if position != dense_positions[-1]:
                x = activate(bn(x), parts[2:])
        elif head == "softmax":
            x = layers.Softmax()(x)
        elif head == "output":
            pass
        else:
            sys.exit(f"mlperf-tiny: {word!r} is not a word of the description grammar")
    return keras.Model(inputs, x)


def count_macs_params(model):
    """MACs of one inference and parameters after batch-norm folding (each convolution and
    dense layer: its weights and one bias per output channel)."""
    macs = params = 0
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Conv2D":
            kh, kw, cin, cout = layer.kernel.shape
            _, h, w, _ = layer.output.shape
            macs += h * w * kh * kw * cin * cout
            params += kh * kw * cin * cout + cout
        elif kind == "DepthwiseConv2D":
            kh, kw, c, m = layer.kernel.shape
            _, h, w, _ = layer.output.shape
            macs += h * w * kh * kw * c * m
            params += kh * kw * c * m + c * m
        elif kind == "Dense":
            cin, cout = layer.kernel.shape
            macs += cin * cout
            params += cin * cout + cout
    return int(macs), int(params)


@contextlib.contextmanager
def captured_stdout(sink):
    """Redirects file descriptors 1 and 2 (where TFLM's C++ code prints) into `sink`'s text."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            f.seek(0)
            sink.append(f.read().decode(errors="replace"))


def tflm_interpreter(path, arena):
    from tflite_micro.python.tflite_micro import runtime

    return runtime.Interpreter.from_file(str(path), arena_size=arena)


def tflm_arena(np, path, shape):
    """The smallest arena (bytes, to 16) with which TFLM allocates and invokes the model, and
    the 'Arena allocation total' print_allocations reports for it."""

    def works(size):
        # A separate process: TFLM may crash, not only fail, when the arena is too small.
        probe = (
            "import sys, numpy as np\n"
            "from tflite_micro.python.tflite_micro import runtime\n"
            "interpreter = runtime.Interpreter.from_file(sys.argv[1], arena_size=int(sys.argv[2]))\n"
            "interpreter.set_input(np.zeros(eval(sys.argv[3]), np.int8), 0)\n"
            "interpreter.invoke()\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", probe, str(path), str(size), repr(list(shape))],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return done.returncode == 0

    high = 1 << 14
    while not works(high):
        high *= 2
        if high > 1 << 28:
            sys.exit(f"mlperf-tiny: {path}: TFLM fails even with a 256 MiB arena")
    low = 0
    while high - low > 16:
        middle = (low + high) // 2 // 16 * 16
        if works(middle):
            high = middle
        else:
            low = middle
    text = []
    with captured_stdout(text):
        tflm_interpreter(path, high).print_allocations()
    reported = None
    for line in text[0].splitlines():
        if "Arena allocation total" in line:
            reported = int(line.split("total")[1].split()[0])
    return high, reported, text[0]


def litert_interpreter(path, preserve=False):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(
        model_path=str(path),
        experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
        experimental_preserve_all_tensors=preserve,
        num_threads=1,
    )
    interpreter.allocate_tensors()
    return interpreter


def run_engine(job):
    """Worker: runs `engine` ('tflm' or 'litert') on inputs; returns the int8 outputs as bytes.
    job = (engine, model path, arena, source, first, count) where source is ('prng', seed, shape)
    or ('mnist', directory)."""
    import numpy as np

    engine, path, arena, source, first, count = job
    if source[0] == "prng":
        _, seed, shape = source
        size = int(np.prod(shape))
        inputs = random_inputs(np, seed, size, first, count).reshape([count, 1] + list(shape[1:]))
    else:
        from mnist_idx import read_idx

        images = read_idx(pathlib.Path(source[1]), "x_test", "mlperf-tiny")[first : first + count]
        inputs = (images.astype(np.int16) - 128).astype(np.int8)[:, None, :, :, None]
    outputs = []
    logits = []
    if engine == "tflm":
        interpreter = tflm_interpreter(path, arena)
        for x in inputs:
            interpreter.set_input(x, 0)
            interpreter.invoke()
            outputs.append(np.asarray(interpreter.get_output(0), dtype=np.int8).reshape(-1))
    else:
        preserve = source[0] == "mnist"
        interpreter = litert_interpreter(path, preserve)
        source_index = interpreter.get_input_details()[0]["index"]
        sink_index = interpreter.get_output_details()[0]["index"]
        softmaxes = [op for op in interpreter._get_ops_details() if op["op_name"] == "SOFTMAX"]
        for x in inputs:
            interpreter.set_tensor(source_index, x)
            interpreter.invoke()
            outputs.append(interpreter.get_tensor(sink_index).reshape(-1).copy())
            if preserve and softmaxes:
                logits.append(interpreter.get_tensor(int(softmaxes[-1]["inputs"][0])).reshape(-1).copy())
    out = np.stack(outputs).astype(np.int8).tobytes()
    return out, (np.stack(logits).astype(np.int8).tobytes() if logits else b"")


def run_all(jobs, workers):
    """Runs the jobs in `workers` spawned processes (TensorFlow is not fork-safe)."""
    import concurrent.futures
    import multiprocessing

    if workers <= 1:
        return [run_engine(job) for job in jobs]
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        return list(pool.map(run_engine, jobs))


def split(engine, path, arena, source, total, pieces):
    step = -(-total // pieces)
    return [(engine, str(path), arena, source, first, min(step, total - first)) for first in range(0, total, step)]


def versions():
    from importlib import metadata

    found = {"python": sys.version.split()[0]}
    for package in ("tensorflow-cpu", "tensorflow", "keras", "numpy", "tflite-micro", "ai-edge-litert"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return found


def quantisation(details):
    scale, zero_point = details["quantization"]
    return {
        "shape": [int(v) for v in details["shape"]],
        "dtype": str(details["dtype"].__name__),
        "scale": float(scale),
        "zero_point": int(zero_point),
    }


def make_network(np, tf, keras, name, args):
    description, seed, (low, high), samples, epochs = NETWORKS[name]
    words = description.split()
    shape = shape_of(words[0])
    values = words[-1] == "output:values"
    keras.utils.set_random_seed(42)
    model = build(keras, description)
    macs, params = count_macs_params(model)

    rng = np.random.default_rng(42)
    x = rng.uniform(low, high, size=[samples] + shape).astype(np.float32)
    if values:
        y = x
        loss = "mse"
        metrics = []
    else:
        classes = model.output.shape[-1]
        projection = rng.normal(size=(int(np.prod(shape)), classes)).astype(np.float32)
        y = (x.reshape(samples, -1) @ projection).argmax(axis=1)
        loss = "sparse_categorical_crossentropy"
        metrics = ["accuracy"]
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, metrics=metrics)
    history = model.fit(x, y, batch_size=32, epochs=epochs, verbose=0)
    training = {
        "inputs": f"uniform in [{low:g}, {high:g}), numpy default_rng(42)",
        "targets": "the input (mse)" if values else "argmax of a fixed random linear projection of the input",
        "samples": samples,
        "epochs": epochs,
        "batch": 32,
        "optimizer": "Adam 1e-3",
        "batch_norm_momentum": 0.9,
        "final": {k: float(v[-1]) for k, v in history.history.items()},
    }

    # The batch-norm moving statistics must have left their initial 0 and 1.
    means = []
    variances = []
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            means.append(np.abs(np.asarray(layer.moving_mean)).max())
            variances.append(np.abs(np.asarray(layer.moving_variance) - 1.0).max())
    moved = sum(1 for m, v in zip(means, variances) if m > 0.01 and v > 0.01)
    training["batch_norm_max_abs_moving_mean_per_layer"] = [round(float(m), 4) for m in means]
    training["batch_norm_max_abs_moving_variance_minus_1_per_layer"] = [round(float(v), 4) for v in variances]
    training["batch_norm_layers"] = len(means)
    training["batch_norm_layers_moved"] = moved
    training["batch_norm_max_abs_moving_mean"] = float(max(means))
    training["batch_norm_max_abs_moving_variance_minus_1"] = float(max(variances))
    if moved != len(means):
        print(f"mlperf-tiny: {name}: only {moved} of {len(means)} batch norms moved", file=sys.stderr)

    calibration_x = np.random.default_rng(7).uniform(low, high, size=[CALIBRATION] + shape).astype(np.float32)

    def calibration():
        for sample in calibration_x:
            yield [sample[None]]

    # The same network with a static batch of 1 and the trained weights: with Keras's dynamic
    # batch, Flatten converts to SHAPE, STRIDED_SLICE, PACK and RESHAPE; with a static one only
    # the RESHAPE is left.
    single = build(keras, description, batch_size=1)
    single.set_weights(model.get_weights())
    converter = tf.lite.TFLiteConverter.from_keras_model(single)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = calibration
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    blob = converter.convert()
    tflite_path = args.out / f"{name}.tflite"
    tflite_path.write_bytes(blob)

    interpreter = litert_interpreter(tflite_path)
    ops = [op["op_name"] for op in interpreter._get_ops_details()]
    unexpected = sorted(set(ops) - ALLOWED_OPS)
    if unexpected:
        print(f"mlperf-tiny: {name}: the graph holds {unexpected}", file=sys.stderr)
    source = quantisation(interpreter.get_input_details()[0])
    sink = quantisation(interpreter.get_output_details()[0])
    del interpreter

    tflite_shape = source["shape"]
    arena, reported, allocations = tflm_arena(np, tflite_path, tflite_shape)
    size = int(np.prod(tflite_shape))
    prng = ("prng", seed, tflite_shape)
    # The arena the outputs are computed with: generous, like a real deployment's.
    run_arena = arena + 4096
    jobs = split("tflm", tflite_path, run_arena, prng, args.count, args.jobs) + split(
        "litert", tflite_path, 0, prng, args.count, args.jobs
    )
    results = run_all(jobs, args.jobs)
    tflm = b"".join(r[0] for r in results[: len(jobs) // 2])
    litert = b"".join(r[0] for r in results[len(jobs) // 2 :])
    (args.out / f"{name}.tflm").write_bytes(tflm)
    (args.out / f"{name}.litert").write_bytes(litert)
    outputs = int(np.prod(sink["shape"]))
    a = np.frombuffer(tflm, np.int8).reshape(args.count, outputs)
    b = np.frombuffer(litert, np.int8).reshape(args.count, outputs)
    differ = a != b

    summary = {
        "network": name,
        "description": description,
        "input": source,
        "output": sink,
        "macs": macs,
        "parameters": params,
        "seed": seed,
        "seed_hex": f"{seed:#x}",
        "count": args.count,
        "input_bytes": size,
        "output_bytes": outputs,
        "first_input_first_16_bytes": random_inputs(np, seed, size, 0, 1)[0, :16].tolist(),
        "prng": "splitmix64 seeded with seed; byte j (j = 0, 1, ...) of the stream is the top 8 bits of "
        "output j+1 as int8; input i is bytes i*input_bytes .. (i+1)*input_bytes-1 in NHWC order",
        "ops": ops,
        "tflite_bytes": len(blob),
        "tflm_arena_bytes": arena,
        "tflm_arena_reported_total": reported,
        "tflm_arena_run_with": run_arena,
        "tflm_print_allocations": allocations.strip().splitlines(),
        "tflm_vs_litert": {
            "inputs_differing": int(differ.any(axis=1).sum()),
            "bytes_differing": int(differ.sum()),
            "max_abs_difference": int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max()),
        },
        "training": training,
        "versions": versions(),
    }
    if not values:
        summary["litert_argmax_histogram"] = np.bincount(b.argmax(axis=1), minlength=outputs).tolist()
    else:
        summary["litert_output_byte_range"] = [int(b.min()), int(b.max())]
        summary["litert_distinct_output_bytes"] = int(len(np.unique(b)))
    if unexpected:
        summary["unexpected_ops"] = unexpected
    (args.out / f"{name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: summary[k] for k in summary if k not in ("tflm_print_allocations", "training")}))
    return summary


def keras_tflm(args):
    import numpy as np
    from mnist_idx import read_idx

    labels = read_idx(args.data, "y_test", "mlperf-tiny")
    total = len(labels)
    report = {}
    for name in args.only_keras or KERAS_NETWORKS:
        path = args.keras_dir / f"{name}.tflite"
        arena, reported, _ = tflm_arena(np, path, [1, 28, 28, 1])
        run_arena = arena + 4096
        source = ("mnist", str(args.data))
        jobs = split("tflm", path, run_arena, source, total, args.jobs) + split(
            "litert", path, 0, source, total, args.jobs
        )
        results = run_all(jobs, args.jobs)
        tflm = b"".join(r[0] for r in results[: len(jobs) // 2])
        litert = b"".join(r[0] for r in results[len(jobs) // 2 :])
        logits = b"".join(r[1] for r in results[len(jobs) // 2 :])
        (args.keras_dir / f"{name}.tflm").write_bytes(tflm)
        a = np.frombuffer(tflm, np.int8).reshape(total, -1)
        b = np.frombuffer(litert, np.int8).reshape(total, -1)
        shipped = np.frombuffer((args.keras_dir / f"{name}.logits").read_bytes(), np.int8).reshape(total, -1)
        now = np.frombuffer(logits, np.int8).reshape(total, -1)
        differ = a != b
        report[name] = {
            "tflm_arena_bytes": arena,
            "tflm_arena_reported_total": reported,
            "tflm_vs_litert_images_differing": int(differ.any(axis=1).sum()),
            "tflm_vs_litert_bytes_differing": int(differ.sum()),
            "litert_logits_vs_shipped_logits_images_differing": int((now != shipped).any(axis=1).sum()),
            "tflm_accuracy": float((a.argmax(axis=1) == labels).mean()),
            "litert_accuracy": float((b.argmax(axis=1) == labels).mean()),
        }
        print(json.dumps({name: report[name]}))
    report["versions"] = versions()
    print(json.dumps(report, indent=2))
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "data" / "mlperf")
    parser.add_argument("--only", action="append", choices=sorted(NETWORKS), help="one network (repeatable)")
    parser.add_argument("--count", type=int, default=1000, help="random inputs per network (default 1000)")
    parser.add_argument("--threads", type=int, default=2, help="TensorFlow's CPU threads (default 2)")
    parser.add_argument("--jobs", type=int, default=2, help="processes that run the interpreters (default 2)")
    parser.add_argument("--keras-tflm", action="store_true", help="the data/keras/NAME.tflm mode (see above)")
    parser.add_argument("--keras-dir", type=pathlib.Path, default=ROOT / "data" / "keras")
    parser.add_argument("--data", type=pathlib.Path, default=ROOT / "data" / "mnist", help="MNIST IDX files")
    parser.add_argument("--only-keras", action="append", choices=KERAS_NETWORKS, help="with --keras-tflm")
    args = parser.parse_args()

    import numpy as np

    check_prng(np)
    if args.keras_tflm:
        return keras_tflm(args)

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.only or list(NETWORKS):
        make_network(np, tf, keras, name, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
