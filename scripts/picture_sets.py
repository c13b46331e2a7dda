"""Shared helpers of the picture-set scripts beside this one (idx-to-folders.py,
make-13-class-set.py, make-colour-set.py): read and write IDX files, write PNGs, prepare an output
folder. Python 3 standard library only (gzip, struct, zlib): no numpy, no Pillow.

Every reading or writing problem is raised as DataError, whose message names the file; `run`
turns it into `PROGRAM: MESSAGE` on stderr and exit status 1.
"""

import gzip
import shutil
import struct
import sys
import zlib
from pathlib import Path

# The four files of an MNIST-format set, each raw or gzip-compressed (NAME or NAME.gz), and the
# number of dimensions of each (images: count, rows, columns; labels: count).
MNIST_FILES = {
    ("train", "images"): ("train-images-idx3-ubyte", 3),
    ("train", "labels"): ("train-labels-idx1-ubyte", 1),
    ("test", "images"): ("t10k-images-idx3-ubyte", 3),
    ("test", "labels"): ("t10k-labels-idx1-ubyte", 1),
}
SPLITS = ("train", "test")
UNSIGNED_BYTE = 0x08


class DataError(Exception):
    """A file that cannot be read or written; the message names it."""


class Images:
    """`count` images of `rows` x `cols` unsigned bytes, row-major, one after another in
    `pixels` (a bytes object: image i is pixels[i * size : (i + 1) * size])."""

    def __init__(self, count, rows, cols, pixels):
        self.count, self.rows, self.cols, self.pixels = count, rows, cols, pixels
        self.size = rows * cols

    def image(self, index):
        return self.pixels[index * self.size : (index + 1) * self.size]


def read_idx(path):
    """One IDX file of unsigned bytes, raw or gzip-compressed (by its first two bytes, whatever
    its name), as (dims, values): dims a list of ints, values the bytes after the header."""
    path = Path(path)
    try:
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, EOFError, zlib.error) as error:
        # gzip.BadGzipFile is an OSError; a truncated stream is an EOFError.
        raise DataError(f"{path}: cannot read it ({error or type(error).__name__})") from None
    if len(data) < 4:
        raise DataError(f"{path}: {len(data)} bytes, too short for an IDX header")
    zero, kind, ndims = struct.unpack(">HBB", data[:4])
    if zero != 0 or ndims == 0:
        raise DataError(f"{path}: not an IDX file (magic {data[:4].hex()})")
    if kind != UNSIGNED_BYTE:
        raise DataError(
            f"{path}: IDX values of type {kind:#04x}; only unsigned bytes ({UNSIGNED_BYTE:#04x}) "
            "are supported"
        )
    start = 4 + 4 * ndims
    if len(data) < start:
        raise DataError(f"{path}: truncated IDX header ({len(data)} bytes, {ndims} dimensions)")
    dims = list(struct.unpack(f">{ndims}I", data[4:start]))
    count = 1
    for d in dims:
        count *= d
    if len(data) - start != count:
        raise DataError(
            f"{path}: {len(data) - start} bytes of values, the header "
            f"({' x '.join(map(str, dims))}) says {count}"
        )
    return dims, data[start:]


def write_idx(path, dims, values):
    """An IDX file of unsigned bytes; gzip-compressed when `path` ends in .gz."""
    path = Path(path)
    count = 1
    for d in dims:
        count *= d
    assert len(values) == count, (dims, len(values))
    data = struct.pack(f">HBB{len(dims)}I", 0, UNSIGNED_BYTE, len(dims), *dims) + bytes(values)
    if path.suffix == ".gz":
        # mtime=0: the same content gives the same file.
        data = gzip.compress(data, compresslevel=6, mtime=0)
    try:
        path.write_bytes(data)
    except OSError as error:
        raise DataError(f"{path}: cannot write it ({error.strerror or error})") from None


def find_mnist_file(directory, name):
    """NAME.gz or NAME in `directory` (NAME.gz first, as tinycnn's host reads them)."""
    directory = Path(directory)
    for candidate in (directory / (name + ".gz"), directory / name):
        if candidate.is_file():
            return candidate
    if not directory.is_dir():
        raise DataError(f"{directory}: no such directory")
    raise DataError(
        f"{directory}: no {name} or {name}.gz (an MNIST-format directory holds four IDX files)"
    )


def read_mnist_format(directory):
    """The four IDX files of an MNIST-format directory, checked: {split: (Images, labels)} for
    split in SPLITS, labels a bytes object with one byte per image."""
    result = {}
    for split in SPLITS:
        image_name, _ = MNIST_FILES[(split, "images")]
        label_name, _ = MNIST_FILES[(split, "labels")]
        image_path = find_mnist_file(directory, image_name)
        label_path = find_mnist_file(directory, label_name)
        dims, pixels = read_idx(image_path)
        if len(dims) != 3:
            raise DataError(
                f"{image_path}: {len(dims)} dimensions; images have 3 (count, rows, columns)"
            )
        label_dims, labels = read_idx(label_path)
        if len(label_dims) != 1:
            raise DataError(f"{label_path}: {len(label_dims)} dimensions; labels have 1 (count)")
        if label_dims[0] != dims[0]:
            raise DataError(
                f"{image_path} holds {dims[0]} images but {label_path} {label_dims[0]} labels"
            )
        result[split] = (Images(dims[0], dims[1], dims[2], pixels), labels)
    return result


def write_mnist_format(directory, sets, gz=False):
    """The four IDX files of an MNIST-format set into `directory`; `sets` as read_mnist_format
    returns it."""
    for split in SPLITS:
        images, labels = sets[split]
        suffix = ".gz" if gz else ""
        image_name, _ = MNIST_FILES[(split, "images")]
        label_name, _ = MNIST_FILES[(split, "labels")]
        write_idx(Path(directory) / (image_name + suffix),
                  [images.count, images.rows, images.cols], images.pixels)
        write_idx(Path(directory) / (label_name + suffix), [len(labels)], labels)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_IEND = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
GREY, RGB = 1, 3  # channels; PNG colour types 0 and 2
_COLOUR_TYPE = {GREY: 0, RGB: 2}
_headers = {}


def _chunk(kind, body):
    crc = zlib.crc32(body, zlib.crc32(kind))
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def png_bytes(width, height, pixels, channels=GREY, level=6):
    """A PNG of 8-bit grey (channels=GREY, colour type 0) or RGB (channels=RGB, colour type 2)
    pixels, row-major (RGB interleaved), every row unfiltered (filter type 0), not interlaced.
    The decoded pixels are exactly `pixels`."""
    stride = width * channels
    assert len(pixels) == stride * height, (width, height, channels, len(pixels))
    key = (width, height, channels)
    header = _headers.get(key)
    if header is None:
        body = struct.pack(">IIBBBBB", width, height, 8, _COLOUR_TYPE[channels], 0, 0, 0)
        header = _headers[key] = PNG_SIGNATURE + _chunk(b"IHDR", body)
    # One filter-type byte (0) before each row.
    raw = bytearray((stride + 1) * height)
    for y in range(height):
        start = y * (stride + 1) + 1
        raw[start : start + stride] = pixels[y * stride : (y + 1) * stride]
    return header + _chunk(b"IDAT", zlib.compress(raw, level)) + PNG_IEND


def write_png(path, width, height, pixels, channels=GREY):
    try:
        with open(path, "wb") as f:
            f.write(png_bytes(width, height, pixels, channels))
    except OSError as error:
        raise DataError(f"{path}: cannot write it ({error.strerror or error})") from None


def check_folder_names(names, what="class"):
    """Refuse names that cannot be folder names a folder reader lists as they are."""
    seen = set()
    for name in names:
        if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
            raise DataError(f"{name!r} cannot be a {what} folder name")
        if name.startswith("."):
            raise DataError(f"{name!r}: a name starting with '.' is a hidden folder, which folder "
                            "readers skip")
        if name != name.strip():
            raise DataError(f"{name!r}: leading or trailing white space in a {what} name")
        if name in seen:
            raise DataError(f"{name!r} given twice: every class needs its own folder")
        seen.add(name)


def sorts_in_order(names):
    """Whether sorting the names (by bytes of UTF-8, which is code-point order: what Python's
    sorted() and Rust's sort of strings give) keeps them in the given order."""
    return [name.encode() for name in names] == sorted(name.encode() for name in names)


def prepare_output(out, parts, overwrite):
    """Make `out` ready for writing `parts` (names of the files and folders a script writes in
    it). An existing non-empty `out` is refused unless `overwrite`; then only `parts` are removed
    first (nothing else in `out`), so that no stale picture of an earlier run stays behind."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise DataError(f"{out}: exists and is not empty (give --overwrite to replace "
                            f"{', '.join(parts)} in it)")
        for part in parts:
            target = out / part
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"{out}: cannot create it ({error.strerror or error})") from None


def index_width(count):
    """Digits of the picture numbers of a split of `count` pictures: 5, or more for a larger
    split, so that sorted file names keep the numbers' order."""
    return max(5, len(str(max(count - 1, 0))))


def run(program, main):
    """Call main(); a DataError or OSError ends the program with `PROGRAM: MESSAGE`."""
    try:
        main()
        sys.stdout.flush()
    except BrokenPipeError:
        # The summary went to a reader that stopped early (| head): the files are all written.
        sys.stdout = None
    except DataError as error:
        sys.exit(f"{program}: {error}")
    except OSError as error:
        where = f"{error.filename}: " if error.filename else ""
        sys.exit(f"{program}: {where}{error.strerror or error}")
    except KeyboardInterrupt:
        sys.exit(f"{program}: interrupted (the output folder is incomplete)")
