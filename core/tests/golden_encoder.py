# Independent encoder of tinycnn model files, written from core/FORMAT.md alone
# (Python standard library only): it shares no code with the core, so where
# the page is ambiguous or wrong, the bytes differ. It produces the
# deterministic models of core/tests/common/mod.rs, in format versions 1 and 2
# (the reference network, OTHER), 3 (DS_CNN, VALUES: strided, rectangular
# and depthwise convolutions, ReLU6, pools of any window, global average pool,
# residual blocks with identity and projection shortcuts, softmax, a vector
# input, an output of values, a non-pixel input quantisation), 4 (OTHER
# with class names, and without), 5 (DS_CNN read from an audio front end,
# with class names and without) and 6 (the same with the 16-bit FFT, and with
# the 32-bit one written as version 6), and prints their lengths and CRC-32s, which
# core/tests/format.rs pins as golden values.
# The tensors follow the same patterns as the Rust helpers; an addition's and a
# softmax's integers are derived from the scales around them as the page's
# "Records" section describes (TensorFlow Lite Micro's Prepare).
# usage: python3 core/tests/golden_encoder.py
import math, struct, zlib

def varint(n):
    out = b''
    while True:
        b = n & 0x7f; n >>= 7
        if n: out += bytes([b | 0x80])
        else: return out + bytes([b])

def bstr(b): return varint(len(b)) + b

def f32(x):
    """x rounded to binary32, as the Rust helpers compute their scales."""
    return struct.unpack('<f', struct.pack('<f', x))[0]

def i32s(values): return b''.join(struct.pack('<i', v) for v in values)

def i8s(values): return bytes(v & 0xff for v in values)

def quant(scale, zero_point): return struct.pack('<fb', scale, zero_point)

PIXELS = (1 / 255, -128)

# Versions 1 and 2. A description: input (h, w, c) and layers as tuples:
# ('conv', k, valid, filters, relu), ('pool',), ('drop', thousandths), ('flatten',), ('dense', units, relu)
REFERENCE = ((28, 28, 1), [
    ('conv', 3, False, 64, True), ('pool',), ('drop', 500),
    ('conv', 3, False, 128, True), ('pool',), ('drop', 500),
    ('conv', 3, False, 256, True), ('pool',), ('drop', 500),
    ('flatten',), ('dense', 128, True), ('dense', 64, True), ('dense', 32, True), ('dense', 10, False)])
OTHER = ((12, 12, 3), [
    ('conv', 5, True, 4, True), ('pool',), ('conv', 1, False, 3, False), ('pool',),
    ('flatten',), ('dense', 6, False), ('dense', 5, False)])

def describe(net):
    (h, w, c), layers = net
    out = varint(h) + varint(w) + varint(c) + varint(len(layers))
    for layer in layers:
        kind = layer[0]
        if kind == 'conv':
            _, k, valid, f, relu = layer
            out += varint(0) + bytes([k]) + varint(int(valid)) + varint(f) + varint(int(relu))
        elif kind == 'pool': out += varint(1)
        elif kind == 'drop': out += varint(2) + varint(layer[1])
        elif kind == 'flatten': out += varint(3)
        else: out += varint(4) + varint(layer[1]) + varint(int(layer[2]))
    return out

def weighted(net):
    """(outputs, fan_in, relu) of each layer with weights, following the shapes."""
    (h, w, c), layers = net
    out = []
    for layer in layers:
        kind = layer[0]
        if kind == 'conv':
            _, k, valid, f, relu = layer
            out.append((f, k * k * c, relu))
            if valid: h, w = h - k + 1, w - k + 1
            c = f
        elif kind == 'pool': h, w = h // 2, w // 2
        elif kind == 'flatten': h, w, c = 1, 1, h * w * c
        elif kind == 'dense':
            out.append((layer[1], h * w * c, layer[2])); c = layer[1]
    return out

V1_ARCHITECTURE = b''.join(varint(v) for v in [28, 28, 1, 64, 128, 256, 128, 64, 32, 10])

def file(version, flavour, payload):
    head = b'TCNN' + struct.pack('<HBBI', version, flavour, 0, len(payload))
    crc = zlib.crc32(payload) if version == 1 else zlib.crc32(head + payload)
    return head + struct.pack('<I', crc) + payload

# The deterministic tensors of a layer with weights: `index` is its record's
# position, `n` its outputs, `fan` its fan-in.
def int8_record(index, n, fan, seed, relu):
    w = i8s(((((i * 2654435761) + seed) % 2**32) % 255 - 127) for i in range(n * fan))
    scales = b''.join(struct.pack('<f', (1 + c % 7) / 1024) for c in range(n))
    bias = i32s((c * 37 + seed) % 2001 - 1000 for c in range(n))
    mult = i32s((1 << 30) + c * 7919 for c in range(n))
    shifts = i8s(-8 - (c % 5) for c in range(n))
    output = ((5 + index) / 128, -128 if relu else 3)
    return output, quant(*output) + bstr(scales) + bstr(w) + bstr(bias) + bstr(mult) + bstr(shifts)

def f32_record(n, fan, seed):
    w = b''.join(struct.pack('<f', (((i ^ seed) % 1000) - 500.0) / 8192) for i in range(n * fan))
    b = b''.join(struct.pack('<f', c / 1024) for c in range(n))
    return bstr(w) + bstr(b)

def int8_model(net, seed, version=2):
    p = (V1_ARCHITECTURE if version == 1 else describe(net)) + quant(*PIXELS)
    for idx, (n, fan, relu) in enumerate(weighted(net)):
        p += int8_record(idx, n, fan, seed, relu)[1]
    return file(version, 2, p)

def f32_model(net, seed, version=2):
    p = V1_ARCHITECTURE if version == 1 else describe(net)
    for n, fan, _ in weighted(net):
        p += f32_record(n, fan, seed)
    return file(version, 1, p)

# Version 3. A description: input (h, w, c), layers, output kind (0 classes,
# 1 values). Activations: 0 none, 1 ReLU, 2 ReLU6. A window is
# (kernel height, kernel width, stride height, stride width, valid).
# ('conv', window, filters, act), ('pool',), ('drop', thousandths), ('flatten',),
# ('dense', units, act), ('dw', window, multiplier, act), ('maxpool', window),
# ('avgpool', window), ('gap',), ('residual', filters, stride) (filters 0:
# identity), ('add', act), ('softmax',)
NONE, RELU, RELU6 = 0, 1, 2

# The text form of the same nets is in core/tests/common/mod.rs.
DS_CNN = ((10, 6, 1), [
    ('conv', (4, 2, 2, 2, False), 8, RELU),
    ('dw', (3, 3, 1, 1, False), 1, RELU),
    ('conv', (1, 1, 1, 1, False), 8, RELU6),
    ('residual', 12, 2),
    ('dw', (3, 3, 2, 2, False), 2, RELU6),
    ('conv', (1, 1, 1, 1, False), 12, NONE),
    ('add', RELU),
    ('residual', 0, 1),
    ('dw', (3, 3, 1, 1, False), 1, NONE),
    ('add', RELU6),
    ('avgpool', (3, 2, 2, 2, False)),
    ('maxpool', (2, 1, 1, 1, False)),
    ('gap',),
    ('flatten',),
    ('dense', 5, NONE),
    ('softmax',)], 0)
# A vector input of 20 values: height 1, width 1, 20 channels.
VALUES = ((1, 1, 20), [('dense', 8, RELU6), ('dense', 6, RELU), ('dense', 4, NONE)], 1)
DS_CNN_INPUT = (1 / 64, -20)

def window_bytes(window):
    kh, kw, sh, sw, valid = window
    return b''.join(varint(v) for v in (kh, kw, sh, sw, int(valid)))

def describe_v3(net):
    (h, w, c), layers, output = net
    out = varint(h) + varint(w) + varint(c) + varint(len(layers))
    for layer in layers:
        kind = layer[0]
        if kind == 'conv': out += varint(0) + window_bytes(layer[1]) + varint(layer[2]) + varint(layer[3])
        elif kind == 'pool': out += varint(1)
        elif kind == 'drop': out += varint(2) + varint(layer[1])
        elif kind == 'flatten': out += varint(3)
        elif kind == 'dense': out += varint(4) + varint(layer[1]) + varint(layer[2])
        elif kind == 'dw': out += varint(5) + window_bytes(layer[1]) + varint(layer[2]) + varint(layer[3])
        elif kind == 'maxpool':
            assert layer[1] != (2, 2, 2, 2, True), 'a writer writes tag 1 for this pool'
            out += varint(6) + window_bytes(layer[1])
        elif kind == 'avgpool': out += varint(7) + window_bytes(layer[1])
        elif kind == 'gap': out += varint(8)
        elif kind == 'residual': out += varint(9) + varint(layer[1]) + varint(layer[2])
        elif kind == 'add': out += varint(10) + varint(layer[1])
        elif kind == 'softmax': out += varint(11)
        else: raise ValueError(kind)
    return out + varint(output)

def ceil_div(a, b): return -(-a // b)

def window_output(window, h, w):
    """FORMAT.md "Shapes": 'same' ceil(I / S), 'valid' ceil((I - K + 1) / S)."""
    kh, kw, sh, sw, valid = window
    if valid: return ceil_div(h - kh + 1, sh), ceil_div(w - kw + 1, sw)
    return ceil_div(h, sh), ceil_div(w, sw)

def records_v3(net):
    """The layers with a record, following the shapes: ('weighted', outputs,
    fan_in, act, projection), ('add', act) or ('softmax',); an identity
    shortcut, which has none, is ('identity',) for the quantisation flow."""
    (h, w, c), layers, _ = net
    out = []
    for layer in layers:
        kind = layer[0]
        if kind == 'conv':
            _, window, f, act = layer
            out.append(('weighted', f, window[0] * window[1] * c, act, False))
            (h, w), c = window_output(window, h, w), f
        elif kind == 'dw':
            _, window, m, act = layer
            out.append(('weighted', c * m, window[0] * window[1], act, False))
            (h, w), c = window_output(window, h, w), c * m
        elif kind == 'pool': h, w = h // 2, w // 2
        elif kind in ('maxpool', 'avgpool'): h, w = window_output(layer[1], h, w)
        elif kind == 'gap': h, w = 1, 1
        elif kind == 'flatten': h, w, c = 1, 1, h * w * c
        elif kind == 'dense':
            out.append(('weighted', layer[1], h * w * c, layer[2], False)); h, w, c = 1, 1, layer[1]
        elif kind == 'residual':
            # A projection is a 1x1 convolution of the block's input, no
            # activation; the main line goes on unchanged.
            out.append(('weighted', layer[1], c, NONE, True) if layer[1] else ('identity',))
        elif kind == 'add':
            # The block's output has the shortcut's shape: the main line's.
            out.append(('add', layer[1]))
        elif kind == 'softmax': out.append(('softmax',))
    return out

def quantize_multiplier(real):
    """real = multiplier / 2^31 * 2^shift, multiplier in [2^30, 2^31) (TensorFlow Lite)."""
    if real == 0: return 0, 0
    m, shift = math.frexp(real)
    q = math.floor(m * 2**31 + 0.5)  # m * 2^31 > 0: halves away from zero
    if q == 2**31: q, shift = q // 2, shift + 1
    if shift < -31: return 0, 0
    return q, shift

def add_integers(block_scale, shortcut_scale, output_scale):
    """An addition's multipliers and shifts: block output, shortcut, sum."""
    t = 2 * max(block_scale, shortcut_scale)
    reals = (block_scale / t, shortcut_scale / t, t / (2**20 * output_scale))
    return [quantize_multiplier(r) for r in reals]

def softmax_integers(input_scale, beta=1.0):
    """(diff_min, multiplier, left shift) of a softmax."""
    multiplier, shift = quantize_multiplier(min(beta * input_scale * 2**26, 2**31 - 1.0))
    return -math.floor(31 * 2**26 / 2**shift), multiplier, shift

# The page's worked records.
assert add_integers(f32(0.05), f32(0.1), f32(0.12)) == [(2**30, -1), (2**30, 0), (1789569773, -19)]
assert softmax_integers(f32(0.1)) == (-248, 1717986944, 23)

# The page's worked descriptions: its version 3 example, and the reference
# network written as version 3.
EXAMPLE = ((8, 8, 2), [('conv', (3, 2, 2, 2, False), 4, RELU), ('residual', 0, 1),
                       ('conv', (3, 3, 1, 1, False), 4, NONE), ('add', RELU), ('gap',),
                       ('dense', 3, NONE), ('softmax',)], 0)
assert describe_v3(EXAMPLE) == bytes.fromhex(
    '08080207 0003020202000401 090001 0003030101000400 0a01 08 040300 0b 00')
assert [r[0] for r in records_v3(EXAMPLE)] == ['weighted', 'identity', 'weighted', 'add', 'weighted', 'softmax']
def v2_to_v3(net):
    """A version 2 net in version 3's terms: square stride-1 windows, a classifier."""
    return (net[0], [
        ('conv', (l[1], l[1], 1, 1, l[2]), l[3], int(l[4])) if l[0] == 'conv'
        else ('dense', l[1], int(l[2])) if l[0] == 'dense' else l for l in net[1]], 0)
REFERENCE_V3 = v2_to_v3(REFERENCE)
assert len(describe_v3(REFERENCE_V3)) == 57
assert describe_v3(REFERENCE_V3)[4:12] == bytes.fromhex('0003030101004001')

SOFTMAX_OUTPUT = (1 / 256, -128)

def int8_model_v3(net, seed, input_quant=PIXELS, version=3, names=(), front_end=None):
    p = describe_v3(net) + quant(*input_quant)
    # The scales and zero points of the main line and of the open block's
    # shortcut ("Quantisation flow"), from which additions and softmax take
    # their integers.
    main = shortcut = (f32(input_quant[0]), input_quant[1])
    index = 0
    for record in records_v3(net):
        kind = record[0]
        if kind == 'identity':
            shortcut = main
            continue
        if kind == 'weighted':
            _, n, fan, act, projection = record
            output, data = int8_record(index, n, fan, seed, act != NONE)
            output = (f32(output[0]), output[1])
            if projection: shortcut = output
            else: main = output
        elif kind == 'add':
            output = (f32((9 + index) / 128), 3 if record[1] == NONE else -128)
            integers = add_integers(main[0], shortcut[0], output[0])
            data = (quant(*output) + bstr(b'') + bstr(b'') + bstr(b'')
                    + bstr(i32s(m for m, _ in integers)) + bstr(i8s(s for _, s in integers)))
            main = output
        else:
            diff_min, multiplier, shift = softmax_integers(main[0])
            data = (quant(*SOFTMAX_OUTPUT) + bstr(b'') + bstr(b'')
                    + bstr(i32s([diff_min])) + bstr(i32s([multiplier])) + bstr(i8s([shift])))
            main = SOFTMAX_OUTPUT
        p += data
        index += 1
    if version >= 4: p += names_section(net, names)
    if version >= 5: p += front_end_section(net, front_end, input_quant, version)
    return file(version, 2, p)

def f32_model_v3(net, seed, version=3, names=(), front_end=None):
    p = describe_v3(net)
    for record in records_v3(net):
        if record[0] == 'weighted': p += f32_record(record[1], record[2], seed)
        elif record[0] != 'identity': p += bstr(b'') + bstr(b'')  # add, softmax: empty
    if version >= 4: p += names_section(net, names)
    if version >= 5: p += front_end_section(net, front_end, None, version)
    return file(version, 1, p)

# Version 4: version 3's payload followed by the class names section: a varint
# count, then each name as a byte string of its UTF-8 bytes, in class order.
def output_values(net):
    """The number of values the net outputs (its classes for a classifier)."""
    (h, w, c), layers, _ = net
    for layer in layers:
        kind = layer[0]
        if kind == 'conv': (h, w), c = window_output(layer[1], h, w), layer[2]
        elif kind == 'dw': (h, w), c = window_output(layer[1], h, w), c * layer[2]
        elif kind == 'pool': h, w = h // 2, w // 2
        elif kind in ('maxpool', 'avgpool'): h, w = window_output(layer[1], h, w)
        elif kind == 'gap': h, w = 1, 1
        elif kind == 'flatten': h, w, c = 1, 1, h * w * c
        elif kind == 'dense': h, w, c = 1, 1, layer[1]
    return h * w * c

def names_section(net, names):
    """The section, after the page's checks: none, or one valid name per class."""
    encoded = [name.encode('utf-8') for name in names]
    if encoded:
        assert net[2] == 0, 'names need an output of classes'
        assert len(encoded) == output_values(net), 'one name per class'
        for i, name in enumerate(encoded):
            assert 1 <= len(name) <= 64, 'a name has 1 to 64 bytes'
            assert all(b >= 0x20 and b != 0x7f for b in name), 'no ASCII control character'
            assert name not in encoded[:i], 'no two names alike'
    return varint(len(encoded)) + b''.join(bstr(name) for name in encoded)

# The page's worked section: the version 3 example's three classes.
assert names_section(EXAMPLE, ['cat', 'dog', 'caf\u00e9']) == bytes.fromhex('03 03636174 03646f67 05636166c3a9')
assert names_section(EXAMPLE, []) == b'\x00'
OTHER_V3 = v2_to_v3(OTHER)
# One ASCII name, one with a two-byte character, one with a four-byte one.
OTHER_NAMES = ['cat', 'dog', 'caf\u00e9', '7', '\U0001F426 bird']

# Version 5: version 4's payload followed by the front-end section, 29 bytes:
# sample rate u32, window u16, hop u16, FFT size u16, mel bands u8, lower and
# upper edge u32 (Hz), coefficients u8, log floor f32, output scale f32,
# output zero point i8, little-endian. It has no room for the FFT's
# arithmetic: a version 5 front end computes the 32-bit FFT.
# Version 6: version 5 whose section has a 30th byte, the bits of the FFT's
# data, 32 or 16.
MLPERF_KWS = dict(rate=16000, window=480, hop=320, fft=512, bands=40, lower=20, upper=4000,
                  coefficients=10, floor=1e-6, scale=1.0, zero_point=0, fft_bits=32)
MLPERF_KWS_INT16 = dict(MLPERF_KWS, fft_bits=16)

def front_end_section(net, fe, input_quant, version=5):
    """The section of `version`, after the page's checks of a front end against its network."""
    (h, w, c), _, _ = net
    assert 1000 <= fe['rate'] <= 96000
    assert fe['fft'] in (64, 128, 256, 512, 1024)
    assert 2 <= fe['window'] <= fe['fft'] and 1 <= fe['hop'] <= fe['window']
    assert 1 <= fe['bands'] <= 128 and fe['bands'] < fe['fft'] // 2
    assert fe['lower'] < fe['upper'] and 2 * fe['upper'] <= fe['rate']
    assert fe['coefficients'] <= fe['bands']
    assert 1e-9 <= f32(fe['floor']) <= 1 and 1 / 4096 <= f32(fe['scale']) <= 4096
    assert w * c == (fe['coefficients'] or fe['bands']), 'a row of the input is one frame'
    if input_quant is not None:
        assert struct.pack('<fb', *input_quant) == struct.pack('<fb', fe['scale'], fe['zero_point'])
    assert fe['fft_bits'] in (16, 32)
    section = struct.pack('<IHHHBIIBffb', fe['rate'], fe['window'], fe['hop'], fe['fft'], fe['bands'],
                          fe['lower'], fe['upper'], fe['coefficients'], fe['floor'], fe['scale'],
                          fe['zero_point'])
    if version == 5:
        assert fe['fft_bits'] == 32, 'version 5 cannot say the 16-bit FFT'
        return section
    assert version == 6
    return section + bytes([fe['fft_bits']])

assert len(front_end_section(((49, 10, 1), [], 0), MLPERF_KWS, (1.0, 0))) == 29
assert front_end_section(((49, 10, 1), [], 0), MLPERF_KWS_INT16, (1.0, 0), 6)[29:] == b'\x10'
assert front_end_section(((49, 10, 1), [], 0), MLPERF_KWS, (1.0, 0), 6)[29:] == b'\x20'
# DS_CNN's input is 10 frames of 6 MFCCs, read on its own input quantisation.
DS_CNN_FRONT_END = dict(MLPERF_KWS, coefficients=6, scale=DS_CNN_INPUT[0], zero_point=DS_CNN_INPUT[1])
DS_CNN_FRONT_END_INT16 = dict(DS_CNN_FRONT_END, fft_bits=16)
KEYWORDS = ['yes', 'no', 'up', 'down', '_silence_']

for name, model in [
    ('int8 reference v2', int8_model(REFERENCE, 0)),
    ('int8 reference v1', int8_model(REFERENCE, 0, version=1)),
    ('f32 reference v2', f32_model(REFERENCE, 0)),
    ('f32 reference v1', f32_model(REFERENCE, 0, version=1)),
    ('int8 other v2', int8_model(OTHER, 0)),
    ('f32 other v2', f32_model(OTHER, 0)),
    ('int8 ds-cnn v3', int8_model_v3(DS_CNN, 0, DS_CNN_INPUT)),
    ('f32 ds-cnn v3', f32_model_v3(DS_CNN, 0)),
    ('int8 values v3', int8_model_v3(VALUES, 0)),
    ('f32 values v3', f32_model_v3(VALUES, 0)),
    ('int8 other v4 names', int8_model_v3(OTHER_V3, 0, version=4, names=OTHER_NAMES)),
    ('f32 other v4 names', f32_model_v3(OTHER_V3, 0, version=4, names=OTHER_NAMES)),
    ('int8 other v4 no names', int8_model_v3(OTHER_V3, 0, version=4)),
    ('int8 ds-cnn v5 names', int8_model_v3(DS_CNN, 0, DS_CNN_INPUT, version=5, names=KEYWORDS,
                                          front_end=DS_CNN_FRONT_END)),
    ('f32 ds-cnn v5 names', f32_model_v3(DS_CNN, 0, version=5, names=KEYWORDS,
                                        front_end=DS_CNN_FRONT_END)),
    ('int8 ds-cnn v5 no names', int8_model_v3(DS_CNN, 0, DS_CNN_INPUT, version=5,
                                             front_end=DS_CNN_FRONT_END)),
    ('int8 ds-cnn v6 names', int8_model_v3(DS_CNN, 0, DS_CNN_INPUT, version=6, names=KEYWORDS,
                                          front_end=DS_CNN_FRONT_END_INT16)),
    ('f32 ds-cnn v6 names', f32_model_v3(DS_CNN, 0, version=6, names=KEYWORDS,
                                        front_end=DS_CNN_FRONT_END_INT16)),
    ('int8 ds-cnn v6 32-bit FFT names', int8_model_v3(DS_CNN, 0, DS_CNN_INPUT, version=6,
                                                     names=KEYWORDS, front_end=DS_CNN_FRONT_END)),
]:
    print(f'{name}: {len(model)} bytes, crc32 {zlib.crc32(model):#010x}, header {model[:16].hex()}')
print('reference description:', describe(REFERENCE).hex())
print('other description:', describe(OTHER).hex())
print('ds-cnn description:', describe_v3(DS_CNN).hex())
print('values description:', describe_v3(VALUES).hex())
print('other v4 description:', describe_v3(OTHER_V3).hex())
print('other v4 names section:', names_section(OTHER_V3, OTHER_NAMES).hex())
print('ds-cnn v5 front-end section:', front_end_section(DS_CNN, DS_CNN_FRONT_END, DS_CNN_INPUT).hex())
print('mlperf kws front-end section:', front_end_section(((49, 10, 1), [], 0), MLPERF_KWS, (1.0, 0)).hex())
print('ds-cnn v6 front-end section:',
      front_end_section(DS_CNN, DS_CNN_FRONT_END_INT16, DS_CNN_INPUT, 6).hex())
