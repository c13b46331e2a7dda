#!/usr/bin/env python3
"""Writes a C header that runs a TensorFlow Lite int8 model layer by layer with CMSIS-NN.

    extract.py MODEL.tflite OUT.h [--input-seed SEED] [--expected FILE]

For each operator of the graph it computes the parameters TensorFlow Lite
Micro's CMSIS-NN kernels (tensorflow/lite/micro/kernels/cmsis_nn/) compute in
their Prepare and pass in their Eval: per-channel multipliers and shifts
(QuantizeMultiplier of input scale * filter scale / output scale), offsets
(minus the input zero point, plus the output zero point), paddings
(ComputePaddingHeightWidth), activation ranges (CalculateActivationRangeQuantized),
ADD's rescaling (left shift 20), SOFTMAX's input multiplier, shift and
diff_min, and the dimension structs; the CMSIS-NN call is the one TFLM makes
for int8 (arm_convolve_wrapper_s8, arm_depthwise_conv_wrapper_s8,
arm_fully_connected_wrapper_s8 or arm_convolve_1x1_s8_fast,
arm_avgpool_s8, arm_elementwise_add_s8, arm_softmax_s8). The scratch buffer's
size comes from the kernel's *_get_buffer_size at run time (harness.c).

Weights and biases become const arrays; activations live in one arena, each
tensor at an offset chosen here (16-byte aligned, tensors whose lifetimes
overlap never share bytes). The input is input 0 of data/mlperf's rule
(splitmix64 bytes from --input-seed), and --expected names the file of TFLM's
outputs (data/mlperf/NAME.tflm) whose first record the harness compares with.

Reads the .tflite with the flatbuffer schema module of the ai-edge-litert
package (ai_edge_litert.schema_py_generated).
"""

import argparse
import math
import sys

import numpy as np
from ai_edge_litert import schema_py_generated as schema

OPS = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
SAME, VALID = schema.Padding.SAME, schema.Padding.VALID
ACT = schema.ActivationFunctionType


def fail(message):
    print(f"extract.py: {message}", file=sys.stderr)
    sys.exit(1)


# ---- TensorFlow Lite's quantisation arithmetic (quantization_util.cc, kernel_util.cc) ----

def round_away(x):
    """std::round: halves away from zero."""
    return math.floor(x + 0.5) if x >= 0 else -math.floor(-x + 0.5)


def quantize_multiplier(m):
    """QuantizeMultiplier: m = q * 2^shift with q a Q31 value in [0.5, 1)."""
    if m == 0.0:
        return 0, 0
    q, shift = math.frexp(m)
    q_fixed = round_away(q * (1 << 31))
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift, q_fixed = 0, 0
    return int(q_fixed), int(shift)


def activation_range(activation, scale, zero_point):
    """CalculateActivationRangeQuantized for int8 (f / scale in float, as TFLite does)."""
    qmin, qmax = -128, 127

    def quantize(f):
        return zero_point + int(round_away(float(np.float32(f) / np.float32(scale))))

    if activation == ACT.NONE:
        return qmin, qmax
    if activation == ACT.RELU:
        return max(qmin, quantize(0.0)), qmax
    if activation == ACT.RELU6:
        return max(qmin, quantize(0.0)), min(qmax, quantize(6.0))
    if activation == ACT.RELU_N1_TO_1:
        return max(qmin, quantize(-1.0)), min(qmax, quantize(1.0))
    fail(f"fused activation {activation} is not supported")


def padding(padding_type, stride, dilation, in_size, filter_size):
    """ComputePaddingHeightWidth for one dimension: (padding, output size)."""
    effective = (filter_size - 1) * dilation + 1
    if padding_type == SAME:
        out = (in_size + stride - 1) // stride
    else:
        out = (in_size + stride - effective) // stride
    total = max((out - 1) * stride + effective - in_size, 0)
    return total // 2, out


# ---- the graph ----

class Graph:
    def __init__(self, path):
        data = open(path, "rb").read()
        self.model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(data, 0))
        if len(self.model.subgraphs) != 1:
            fail(f"{path}: {len(self.model.subgraphs)} subgraphs; one expected")
        self.graph = self.model.subgraphs[0]
        self.tensors = self.graph.tensors

    def opcode(self, op):
        code = self.model.operatorCodes[op.opcodeIndex]
        return OPS[max(code.builtinCode, code.deprecatedBuiltinCode)]

    def shape(self, t):
        return [int(d) for d in self.tensors[t].shape]

    def quant(self, t):
        q = self.tensors[t].quantization
        return [float(s) for s in q.scale], [int(z) for z in q.zeroPoint]

    def scale_zp(self, t):
        scales, zps = self.quant(t)
        return scales[0], zps[0]

    def constant(self, t, dtype):
        buffer = self.model.buffers[self.tensors[t].buffer]
        if buffer.data is None or len(buffer.data) == 0:
            fail(f"tensor {t} ({self.tensors[t].name}) holds no constant data")
        return np.frombuffer(bytes(bytearray(buffer.data)), dtype=dtype)

    def is_constant(self, t):
        buffer = self.model.buffers[self.tensors[t].buffer]
        return buffer.data is not None and len(buffer.data) > 0


def c_array(ctype, name, values, per_line=24):
    values = [int(v) for v in values]
    lines = []
    for i in range(0, len(values), per_line):
        lines.append("    " + ", ".join(str(v) for v in values[i:i + per_line]) + ",")
    body = "\n".join(lines) if lines else "    0,"
    return f"static const {ctype} {name}[{max(len(values), 1)}] __attribute__((aligned(16))) = {{\n{body}\n}};\n"


def dims(n, h, w, c):
    return f"{{{n}, {h}, {w}, {c}}}"


def per_channel(graph, input_t, filter_t, output_t):
    in_scale, _ = graph.scale_zp(input_t)
    out_scale, _ = graph.scale_zp(output_t)
    filter_scales, filter_zps = graph.quant(filter_t)
    if any(filter_zps):
        fail("a filter with a non-zero zero point")
    pairs = [quantize_multiplier(in_scale * s / out_scale) for s in filter_scales]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def splitmix64_bytes(seed, count):
    mask = (1 << 64) - 1
    state = seed
    out = bytearray()
    for _ in range(count):
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        z ^= z >> 31
        out.append(z >> 56)
    return np.frombuffer(bytes(out), dtype=np.int8)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tflite")
    parser.add_argument("out")
    parser.add_argument("--input-seed", type=lambda s: int(s, 0), default=0,
                        help="splitmix64 seed of the input bytes (data/mlperf/NAME.json's seed)")
    parser.add_argument("--expected", help="TFLM's outputs (data/mlperf/NAME.tflm): the first record is compared")
    parser.add_argument("--name", default="model")
    args = parser.parse_args()

    g = Graph(args.tflite)
    ops = g.graph.operators
    if len(g.graph.inputs) != 1 or len(g.graph.outputs) != 1:
        fail("one input and one output expected")
    graph_input, graph_output = g.graph.inputs[0], g.graph.outputs[0]

    # Activation tensors and their lifetimes (op indices; the input lives from -1).
    first, last = {graph_input: -1}, {}
    for i, op in enumerate(ops):
        for t in op.inputs:
            if t >= 0 and not g.is_constant(t):
                last[t] = i
        for t in op.outputs:
            first.setdefault(t, i)
            last.setdefault(t, i)
    last[graph_output] = len(ops)
    sizes = {t: int(np.prod(g.shape(t))) for t in first}
    for t in first:
        if g.tensors[t].type != schema.TensorType.INT8:
            fail(f"tensor {g.tensors[t].name} is not int8")

    # Largest first, each at the lowest 16-byte aligned offset free for its lifetime.
    offsets = {}
    for t in sorted(first, key=lambda t: (-sizes[t], t)):
        alive = [o for o in offsets if not (last[t] < first[o] or last[o] < first[t])]
        candidates = sorted({0} | {(offsets[o] + sizes[o] + 15) // 16 * 16 for o in alive})
        offsets[t] = next(c for c in candidates
                          if all(c + sizes[t] <= offsets[o] or offsets[o] + sizes[o] <= c for o in alive))
    arena = max(offsets[t] + sizes[t] for t in first)
    arena = (arena + 15) // 16 * 16

    out = []
    calls = []
    sizes_c = []
    infos = []
    total_macs = 0
    for i, op in enumerate(ops):
        name = g.opcode(op)
        o = op.builtinOptions
        ins = [t for t in op.inputs]
        y = op.outputs[0]
        A = lambda t: f"arena + {offsets[t]}"
        out_scale, out_zp = g.scale_zp(y)
        macs = 0
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            x, w = ins[0], ins[1]
            b = ins[2] if len(ins) > 2 else -1
            _, n_h, n_w, n_c = g.shape(x)
            filter_shape = g.shape(w)
            _, o_h, o_w, o_c = g.shape(y)
            k_h, k_w = filter_shape[1], filter_shape[2]
            pad_h, out_h = padding(o.padding, o.strideH, o.dilationHFactor, n_h, k_h)
            pad_w, out_w = padding(o.padding, o.strideW, o.dilationWFactor, n_w, k_w)
            if (out_h, out_w) != (o_h, o_w):
                fail(f"op {i}: computed output {out_h}x{out_w}, the graph says {o_h}x{o_w}")
            _, in_zp = g.scale_zp(x)
            act_min, act_max = activation_range(o.fusedActivationFunction, out_scale, out_zp)
            mult, shift = per_channel(g, x, w, y)
            out.append(c_array("int8_t", f"w{i}", g.constant(w, np.int8)))
            out.append(c_array("int32_t", f"b{i}", g.constant(b, np.int32)) if b >= 0 else "")
            out.append(c_array("int32_t", f"m{i}", mult))
            out.append(c_array("int32_t", f"s{i}", shift))
            bias = f"b{i}" if b >= 0 else "NULL"
            quant = f"static const cmsis_nn_per_channel_quant_params q{i} = {{(int32_t *)m{i}, (int32_t *)s{i}}};\n"
            common = (f"static const cmsis_nn_dims in{i} = {dims(1, n_h, n_w, n_c)}, "
                      f"bias{i} = {dims(1, 1, 1, o_c)}, out{i} = {dims(1, o_h, o_w, o_c)};\n")
            if name == "CONV_2D":
                out.append(common + quant)
                out.append(f"static const cmsis_nn_dims filt{i} = {dims(1, k_h, k_w, filter_shape[3])};\n")
                out.append(f"static const cmsis_nn_conv_params p{i} = {{{-in_zp}, {out_zp}, {{{o.strideW}, {o.strideH}}}, "
                           f"{{{pad_w}, {pad_h}}}, {{{o.dilationWFactor}, {o.dilationHFactor}}}, {{{act_min}, {act_max}}}}};\n")
                call = (f"arm_convolve_wrapper_s8(&ctx, &p{i}, &q{i}, &in{i}, {A(x)}, &filt{i}, w{i}, &bias{i}, {bias}, "
                        f"&out{i}, {A(y)})")
                size = f"arm_convolve_wrapper_s8_get_buffer_size(&p{i}, &in{i}, &filt{i}, &out{i})"
                kernel = "arm_convolve_wrapper_s8"
                macs = o_h * o_w * o_c * k_h * k_w * filter_shape[3]
            else:
                out.append(common + quant)
                out.append(f"static const cmsis_nn_dims filt{i} = {dims(filter_shape[0], k_h, k_w, o_c)};\n")
                out.append(f"static const cmsis_nn_dw_conv_params p{i} = {{{-in_zp}, {out_zp}, {o.depthMultiplier}, "
                           f"{{{o.strideW}, {o.strideH}}}, {{{pad_w}, {pad_h}}}, {{{o.dilationWFactor}, {o.dilationHFactor}}}, "
                           f"{{{act_min}, {act_max}}}}};\n")
                call = (f"arm_depthwise_conv_wrapper_s8(&ctx, &p{i}, &q{i}, &in{i}, {A(x)}, &filt{i}, w{i}, &bias{i}, {bias}, "
                        f"&out{i}, {A(y)})")
                size = f"arm_depthwise_conv_wrapper_s8_get_buffer_size(&p{i}, &in{i}, &filt{i}, &out{i})"
                kernel = "arm_depthwise_conv_wrapper_s8"
                macs = o_h * o_w * o_c * k_h * k_w
        elif name == "FULLY_CONNECTED":
            x, w = ins[0], ins[1]
            b = ins[2] if len(ins) > 2 else -1
            filter_shape = g.shape(w)
            out_shape = g.shape(y)
            accum = filter_shape[-1]
            depth = out_shape[-1]
            batches = int(np.prod(out_shape[:-1]))
            _, in_zp = g.scale_zp(x)
            act_min, act_max = activation_range(o.fusedActivationFunction, out_scale, out_zp)
            filter_scales, _ = g.quant(w)
            in_scale, _ = g.scale_zp(x)
            if len(filter_scales) > 1:
                mult, shift = per_channel(g, x, w, y)
                per_channel_flag = 1
            else:
                m, s = quantize_multiplier(in_scale * filter_scales[0] / out_scale)
                mult, shift = [m], [s]
                per_channel_flag = 0
            out.append(c_array("int8_t", f"w{i}", g.constant(w, np.int8)))
            out.append(c_array("int32_t", f"b{i}", g.constant(b, np.int32)) if b >= 0 else "")
            bias = f"b{i}" if b >= 0 else "NULL"
            out.append(f"static const cmsis_nn_dims in{i} = {dims(batches, 1, 1, accum)}, filt{i} = {dims(accum, 1, 1, depth)}, "
                       f"bias{i} = {dims(1, 1, 1, depth)}, out{i} = {dims(batches, 1, 1, depth)};\n")
            if len(out_shape) > 2 and accum % 4 == 0:
                # TFLM runs it as a 1x1 convolution, with per-channel parameters.
                if not per_channel_flag:
                    mult, shift = mult * depth, shift * depth
                out.append(c_array("int32_t", f"m{i}", mult))
                out.append(c_array("int32_t", f"s{i}", shift))
                out.append(f"static const cmsis_nn_per_channel_quant_params q{i} = {{(int32_t *)m{i}, (int32_t *)s{i}}};\n")
                out.append(f"static const cmsis_nn_conv_params p{i} = {{{-in_zp}, {out_zp}, {{1, 1}}, {{0, 0}}, {{1, 1}}, "
                           f"{{{act_min}, {act_max}}}}};\n")
                call = (f"arm_convolve_1x1_s8_fast(&ctx, &p{i}, &q{i}, &in{i}, {A(x)}, &filt{i}, w{i}, &bias{i}, {bias}, "
                        f"&out{i}, {A(y)})")
                size = f"arm_convolve_1x1_s8_fast_get_buffer_size(&in{i})"
                kernel = "arm_convolve_1x1_s8_fast"
            else:
                out.append(c_array("int32_t", f"m{i}", mult))
                out.append(c_array("int32_t", f"s{i}", shift))
                out.append(f"static const cmsis_nn_quant_params q{i} = {{(int32_t *)m{i}, (int32_t *)s{i}, {per_channel_flag}}};\n")
                out.append(f"static const cmsis_nn_fc_params p{i} = {{{-in_zp}, 0, {out_zp}, {{{act_min}, {act_max}}}}};\n")
                call = (f"arm_fully_connected_wrapper_s8(&ctx, &p{i}, &q{i}, &in{i}, {A(x)}, &filt{i}, w{i}, &bias{i}, {bias}, "
                        f"&out{i}, {A(y)})")
                size = f"arm_fully_connected_s8_get_buffer_size(&filt{i})"
                kernel = "arm_fully_connected_wrapper_s8"
            macs = batches * accum * depth
        elif name == "AVERAGE_POOL_2D":
            x = ins[0]
            _, n_h, n_w, n_c = g.shape(x)
            _, o_h, o_w, o_c = g.shape(y)
            pad_h, out_h = padding(o.padding, o.strideH, 1, n_h, o.filterHeight)
            pad_w, out_w = padding(o.padding, o.strideW, 1, n_w, o.filterWidth)
            if (out_h, out_w) != (o_h, o_w):
                fail(f"op {i}: computed output {out_h}x{out_w}, the graph says {o_h}x{o_w}")
            act_min, act_max = activation_range(o.fusedActivationFunction, out_scale, out_zp)
            out.append(f"static const cmsis_nn_dims in{i} = {dims(1, n_h, n_w, n_c)}, filt{i} = "
                       f"{dims(1, o.filterHeight, o.filterWidth, 1)}, out{i} = {dims(1, o_h, o_w, o_c)};\n")
            out.append(f"static const cmsis_nn_pool_params p{i} = {{{{{o.strideW}, {o.strideH}}}, {{{pad_w}, {pad_h}}}, "
                       f"{{{act_min}, {act_max}}}}};\n")
            call = f"arm_avgpool_s8(&ctx, &p{i}, &in{i}, {A(x)}, &filt{i}, &out{i}, {A(y)})"
            size = f"arm_avgpool_s8_get_buffer_size({o_w}, {o_c})"
            kernel = "arm_avgpool_s8"
        elif name == "ADD":
            x1, x2 = ins[0], ins[1]
            if g.shape(x1) != g.shape(x2):
                fail(f"op {i}: ADD with broadcasting (TFLM runs its reference kernel there)")
            s1, z1 = g.scale_zp(x1)
            s2, z2 = g.scale_zp(x2)
            left_shift = 20
            twice_max = 2 * float(np.float32(max(np.float32(s1), np.float32(s2))))
            m1, sh1 = quantize_multiplier(s1 / twice_max)
            m2, sh2 = quantize_multiplier(s2 / twice_max)
            mo, sho = quantize_multiplier(twice_max / ((1 << left_shift) * out_scale))
            act_min, act_max = activation_range(o.fusedActivationFunction, out_scale, out_zp)
            call = (f"arm_elementwise_add_s8({A(x1)}, {A(x2)}, {-z1}, {m1}, {sh1}, {-z2}, {m2}, {sh2}, {left_shift}, "
                    f"{A(y)}, {out_zp}, {mo}, {sho}, {act_min}, {act_max}, {sizes[y]})")
            size = "0"
            kernel = "arm_elementwise_add_s8"
        elif name == "SOFTMAX":
            x = ins[0]
            in_scale, _ = g.scale_zp(x)
            if out_zp != -128 or np.float32(out_scale) != np.float32(1 / 256):
                fail(f"op {i}: SOFTMAX's output must be scale 1/256, zero point -128")
            beta = float(np.float32(o.beta))
            integer_bits = 5
            real = min(beta * in_scale * (1 << (31 - integer_bits)), (1 << 31) - 1.0)
            mult, shift = quantize_multiplier(real)
            if shift < 0:
                fail(f"op {i}: SOFTMAX multiplier below one")
            radius = math.floor(1.0 * ((1 << integer_bits) - 1) * (1 << (31 - integer_bits)) / (1 << shift))
            diff_min = -radius
            shape = g.shape(x)
            row = shape[-1]
            rows = int(np.prod(shape[:-1]))
            call = f"(arm_softmax_s8({A(x)}, {rows}, {row}, {mult}, {shift}, {diff_min}, {A(y)}), ARM_CMSIS_NN_SUCCESS)"
            size = "0"
            kernel = "arm_softmax_s8"
        elif name == "RESHAPE":
            fail(f"op {i}: RESHAPE (a copy in TFLM, no CMSIS-NN call) is not supported")
        else:
            fail(f"op {i}: {name} is not supported")
        total_macs += macs
        calls.append(call)
        sizes_c.append(size)
        infos.append((name, kernel, macs))

    input_bytes = splitmix64_bytes(args.input_seed, sizes[graph_input])
    expected = None
    if args.expected:
        record = sizes[graph_output]
        raw = open(args.expected, "rb").read(record)
        if len(raw) != record:
            fail(f"{args.expected}: shorter than one output of {record} bytes")
        expected = np.frombuffer(raw, dtype=np.int8)

    with open(args.out, "w") as f:
        f.write(f"/* Generated by extract.py from {args.tflite.split('/')[-1]}; do not edit. */\n")
        f.write(f'#define MODEL_NAME "{args.name}"\n')
        f.write(f"#define ARENA_BYTES {arena}\n#define LAYERS {len(ops)}\n#define MODEL_MACS {total_macs}\n")
        f.write(f"#define INPUT_OFFSET {offsets[graph_input]}\n#define INPUT_BYTES {sizes[graph_input]}\n")
        f.write(f"#define OUTPUT_OFFSET {offsets[graph_output]}\n#define OUTPUT_BYTES {sizes[graph_output]}\n")
        f.write(f"#define HAVE_EXPECTED {1 if expected is not None else 0}\n")
        f.write(f"static int8_t arena[ARENA_BYTES] __attribute__((aligned(16)));\n")
        f.write(c_array("int8_t", "input_data", input_bytes))
        f.write(c_array("int8_t", "expected_output", expected if expected is not None else []))
        f.write("".join(out))
        f.write("static const struct layer_info layer_info[LAYERS] = {\n")
        for name, kernel, macs in infos:
            f.write(f'    {{"{name}", "{kernel}", {macs}}},\n')
        f.write("};\n\n")
        f.write("static int32_t layer_buffer_size(int layer)\n{\n    switch (layer) {\n")
        for i, size in enumerate(sizes_c):
            f.write(f"    case {i}: return {size};\n")
        f.write("    default: return -1;\n    }\n}\n\n")
        f.write("/* Runs one layer between two reads of the counter: returns the second\n"
                " * reading minus the first. */\n")
        f.write("static uint32_t run_layer(int layer, const cmsis_nn_context *context, arm_cmsis_nn_status *status)\n{\n")
        f.write("    const cmsis_nn_context ctx = *context;\n    uint32_t start, end;\n    arm_cmsis_nn_status result;\n")
        f.write("    switch (layer) {\n")
        for i, call in enumerate(calls):
            f.write(f"    case {i}:\n        start = counter_now();\n        result = {call};\n"
                    f"        end = counter_now();\n        break;\n")
        f.write("    default:\n        *status = ARM_CMSIS_NN_ARG_ERROR;\n        return 0;\n    }\n")
        f.write("    (void)ctx;\n    *status = result;\n    return end - start;\n}\n")
    print(f"{args.out}: {len(ops)} layers, {total_macs} MACs, arena {arena} B")


if __name__ == "__main__":
    main()
