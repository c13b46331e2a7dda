# Independent encoder of tinycnn model files, written from core/FORMAT.md alone.
# It produces the deterministic models of core/tests/common.rs and prints their
# lengths and CRC-32s, which core/tests/format.rs pins as golden values.
# usage: python3 core/tests/golden_encoder.py
import struct, zlib
def varint(n):
    out=b''
    while True:
        b=n&0x7f; n>>=7
        if n: out+=bytes([b|0x80])
        else: return out+bytes([b])
def bstr(b): return varint(len(b))+b
layers=[(64,9),(128,576),(256,1152),(128,2304),(64,128),(32,64),(10,32)]
relu=[True]*6+[False]
arch=b''.join(varint(v) for v in [28,28,1,64,128,256,128,64,32,10])
def i8model(seed):
    p=arch+struct.pack('<fb',1/255,-128)
    for idx,(n,fan) in enumerate(layers):
        w=bytes([((((i*2654435761)+seed)%2**32)%255-127)&0xff for i in range(n*fan)])
        scales=b''.join(struct.pack('<f',(1+c%7)/1024) for c in range(n))
        bias=b''.join(struct.pack('<i',(c*37+seed)%2001-1000 if (c*37+seed)>=0 else 0) for c in range(n))
        # Rust: (c*37+seed) % 2001 - 1000 with non-negative operands
        mult=b''.join(struct.pack('<i',(1<<30)+c*7919) for c in range(n))
        shifts=bytes([(-8-(c%5))&0xff for c in range(n)])
        p+=struct.pack('<fb',(5+idx)/128, -128 if relu[idx] else 3)
        p+=bstr(scales)+bstr(w)+bstr(bias)+bstr(mult)+bstr(shifts)
    h=b'TCNN'+struct.pack('<HBBII',1,2,0,len(p),zlib.crc32(p))
    return h+p
def f32model(seed):
    p=arch
    for n,fan in layers:
        w=b''.join(struct.pack('<f',(((i^seed)%1000)-500.0)/8192) for i in range(n*fan))
        b=b''.join(struct.pack('<f',c/1024) for c in range(n))
        p+=bstr(w)+bstr(b)
    h=b'TCNN'+struct.pack('<HBBII',1,1,0,len(p),zlib.crc32(p))
    return h+p
m=i8model(0); print(len(m), hex(zlib.crc32(m)), list(m[34:39]))
f=f32model(0); print(len(f), hex(zlib.crc32(f)))
