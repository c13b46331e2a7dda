"""Golden int8 vectors from TensorFlow Lite's own reference kernels.

Builds tiny Keras models (3x3 'same' conv + ReLU + 2x2 max-pool, and dense
layers), converts them to full-integer int8 TFLite models with a
representative dataset, runs them with TFLite's *reference* op resolver
(the kernels TFLite Micro shares), and writes every quantised tensor and
output to golden.json. `tests/tests/tflite.rs` feeds the same quantised
tensors to tinycnn's kernels (computing multipliers and shifts with the
host's quantiser) and requires identical int8 outputs.

usage: ../shared/bench/keras_reference.sh's venv, or any Python with
tensorflow 2.x:   python make_golden.py golden.json
"""
import json
import sys

import numpy as np
import tensorflow as tf
from tensorflow import keras

rng = np.random.default_rng(20261128)


def convert(model, input_shape, samples):
    def representative():
        for _ in range(samples):
            yield [rng.uniform(-1.0, 1.5, size=(1,) + input_shape).astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def interpreter_for(flatbuffer):
    interpreter = tf.lite.Interpreter(
        model_content=flatbuffer,
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF,
        experimental_preserve_all_tensors=True,
    )
    interpreter.allocate_tensors()
    return interpreter


def quant(details):
    q = details["quantization_parameters"]
    return [float(s) for s in q["scales"]], [int(z) for z in q["zero_points"]]


def ops(interpreter):
    return [(op["op_name"], op["inputs"], op["outputs"]) for op in interpreter._get_ops_details()]


def tensor(interpreter, index):
    return interpreter.get_tensor(index)


def details(interpreter, index):
    return next(d for d in interpreter.get_tensor_details() if d["index"] == index)


def conv_case(height, width, in_channels, out_channels, runs=3):
    model = keras.Sequential([
        keras.Input((height, width, in_channels)),
        keras.layers.Conv2D(out_channels, 3, padding="same", activation="relu",
                            bias_initializer=keras.initializers.RandomUniform(-0.3, 0.3)),
        keras.layers.MaxPooling2D(2),
    ])
    interpreter = interpreter_for(convert(model, (height, width, in_channels), 64))
    graph = ops(interpreter)
    conv = next(o for o in graph if o[0] == "CONV_2D")
    pool = next(o for o in graph if o[0] == "MAX_POOL_2D")
    input_index, filter_index, bias_index = conv[1][:3]
    in_scales, in_zps = quant(details(interpreter, input_index))
    w_scales, _ = quant(details(interpreter, filter_index))
    out_scales, out_zps = quant(details(interpreter, conv[2][0]))
    case = {
        "kind": "conv", "height": height, "width": width,
        "in_channels": in_channels, "out_channels": out_channels,
        "input_scale": in_scales[0], "input_zero_point": in_zps[0],
        "weights": tensor(interpreter, filter_index).flatten().tolist(),  # OHWI
        "weight_scales": w_scales,
        "bias": tensor(interpreter, bias_index).flatten().tolist(),
        "output_scale": out_scales[0], "output_zero_point": out_zps[0],
        "runs": [],
    }
    model_input = interpreter.get_input_details()[0]
    for _ in range(runs):
        x = rng.integers(-128, 128, size=(1, height, width, in_channels), dtype=np.int8)
        interpreter.set_tensor(model_input["index"], x)
        interpreter.invoke()
        case["runs"].append({
            "input": tensor(interpreter, input_index).flatten().tolist(),
            "conv": tensor(interpreter, conv[2][0]).flatten().tolist(),
            "pool": tensor(interpreter, pool[2][0]).flatten().tolist(),
        })
    return case


def dense_case(inputs, outputs, relu, runs=3):
    model = keras.Sequential([
        keras.Input((inputs,)),
        keras.layers.Dense(outputs, activation="relu" if relu else None,
                           bias_initializer=keras.initializers.RandomUniform(-0.3, 0.3)),
    ])
    interpreter = interpreter_for(convert(model, (inputs,), 64))
    fc = next(o for o in ops(interpreter) if o[0] == "FULLY_CONNECTED")
    input_index, filter_index, bias_index = fc[1][:3]
    in_scales, in_zps = quant(details(interpreter, input_index))
    w_scales, _ = quant(details(interpreter, filter_index))
    out_scales, out_zps = quant(details(interpreter, fc[2][0]))
    case = {
        "kind": "dense", "inputs": inputs, "outputs": outputs, "relu": relu,
        "input_scale": in_scales[0], "input_zero_point": in_zps[0],
        "weights": tensor(interpreter, filter_index).flatten().tolist(),  # [out][in]
        # Per-tensor (one scale) or per-channel, as the converter chose.
        "weight_scales": w_scales,
        "bias": tensor(interpreter, bias_index).flatten().tolist(),
        "output_scale": out_scales[0], "output_zero_point": out_zps[0],
        "runs": [],
    }
    model_input = interpreter.get_input_details()[0]
    for _ in range(runs):
        x = rng.integers(-128, 128, size=(1, inputs), dtype=np.int8)
        interpreter.set_tensor(model_input["index"], x)
        interpreter.invoke()
        case["runs"].append({
            "input": tensor(interpreter, input_index).flatten().tolist(),
            "output": tensor(interpreter, fc[2][0]).flatten().tolist(),
        })
    return case


if __name__ == "__main__":
    cases = [
        conv_case(6, 6, 8, 5),
        conv_case(7, 7, 16, 6),
        conv_case(5, 4, 3, 4),
        conv_case(28, 28, 1, 8),
        dense_case(36, 10, False),
        dense_case(64, 32, True),
        dense_case(2304, 16, True),
    ]
    with open(sys.argv[1], "w") as out:
        json.dump({"generator": "tests/tflite/make_golden.py", "tensorflow": tf.__version__,
                   "cases": cases}, out)
        out.write("\n")
