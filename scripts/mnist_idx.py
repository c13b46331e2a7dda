"""The MNIST IDX files for the Python scripts beside this one (tflite-reference.py,
keras-tflite.py, tflite-run.py): each file raw or gzip-compressed, checked against its header."""

import gzip
import sys

FILES = {
    "x_train": ("train-images-idx3-ubyte", 0x803),
    "y_train": ("train-labels-idx1-ubyte", 0x801),
    "x_test": ("t10k-images-idx3-ubyte", 0x803),
    "y_test": ("t10k-labels-idx1-ubyte", 0x801),
}


def read_idx(directory, part, program):
    """One of FILES from `directory` (a pathlib.Path) as a numpy uint8 array; on a missing or
    damaged file, exits with a message that starts with `program`."""
    import numpy as np

    name, magic = FILES[part]
    for path, opener in ((directory / (name + ".gz"), gzip.open), (directory / name, open)):
        if path.is_file():
            with opener(path, "rb") as f:
                data = f.read()
            break
    else:
        sys.exit(f"{program}: {directory}: no {name} or {name}.gz (give --data DIR)")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        sys.exit(f"{program}: {path}: magic {found:#x}, expected {magic:#x}")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(magic & 0xFF)]
    start = 4 + 4 * len(dims)
    count = 1
    for d in dims:
        count *= d
    if len(data) - start != count:
        sys.exit(f"{program}: {path}: {len(data) - start} bytes of values, the header says {count}")
    return np.frombuffer(data, dtype=np.uint8, offset=start).reshape(dims)
