# Independent encoder of tinycnn model files, written from core/FORMAT.md alone
# (Python standard library only). It produces the deterministic models of
# core/tests/common/mod.rs, in format versions 1 and 2, and prints their
# lengths and CRC-32s, which core/tests/format.rs pins as golden values.
# usage: python3 core/tests/golden_encoder.py
import struct, zlib

def varint(n):
    out = b''
    while True:
        b = n & 0x7f; n >>= 7
        if n: out += bytes([b | 0x80])
        else: return out + bytes([b])

def bstr(b): return varint(len(b)) + b

# A description: input (h, w, c) and layers as tuples:
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

def int8_model(net, seed, version=2):
    p = (V1_ARCHITECTURE if version == 1 else describe(net)) + struct.pack('<fb', 1 / 255, -128)
    for idx, (n, fan, relu) in enumerate(weighted(net)):
        w = bytes([((((i * 2654435761) + seed) % 2**32) % 255 - 127) & 0xff for i in range(n * fan)])
        scales = b''.join(struct.pack('<f', (1 + c % 7) / 1024) for c in range(n))
        bias = b''.join(struct.pack('<i', (c * 37 + seed) % 2001 - 1000) for c in range(n))
        mult = b''.join(struct.pack('<i', (1 << 30) + c * 7919) for c in range(n))
        shifts = bytes([(-8 - (c % 5)) & 0xff for c in range(n)])
        p += struct.pack('<fb', (5 + idx) / 128, -128 if relu else 3)
        p += bstr(scales) + bstr(w) + bstr(bias) + bstr(mult) + bstr(shifts)
    return file(version, 2, p)

def f32_model(net, seed, version=2):
    p = V1_ARCHITECTURE if version == 1 else describe(net)
    for n, fan, _ in weighted(net):
        w = b''.join(struct.pack('<f', (((i ^ seed) % 1000) - 500.0) / 8192) for i in range(n * fan))
        b = b''.join(struct.pack('<f', c / 1024) for c in range(n))
        p += bstr(w) + bstr(b)
    return file(version, 1, p)

for name, model in [
    ('int8 reference v2', int8_model(REFERENCE, 0)),
    ('int8 reference v1', int8_model(REFERENCE, 0, version=1)),
    ('f32 reference v2', f32_model(REFERENCE, 0)),
    ('f32 reference v1', f32_model(REFERENCE, 0, version=1)),
    ('int8 other v2', int8_model(OTHER, 0)),
    ('f32 other v2', f32_model(OTHER, 0)),
]:
    print(f'{name}: {len(model)} bytes, crc32 {zlib.crc32(model):#010x}, header {model[:16].hex()}')
print('reference description:', describe(REFERENCE).hex())
print('other description:', describe(OTHER).hex())
