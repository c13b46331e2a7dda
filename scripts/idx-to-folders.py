#!/usr/bin/env python3
"""Write an MNIST-format set (four IDX files) as folders of PNG pictures, one folder per class.

idx-to-folders.py reads the four IDX files of --data DIR (train-images-idx3-ubyte,
train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each raw or .gz; .gz is
taken first) and writes every image as an 8-bit grey PNG (colour type 0, the image's size from the
IDX header) to OUT/train/CLASS/NNNNN.png and OUT/test/CLASS/NNNNN.png, NNNNN the image's index in
its IDX file (five digits, more for a split of over 100,000 images). This is the layout of Keras's
image_dataset_from_directory and of tinycnn's folder reader. The pixels are exactly the IDX bytes
(lossless), so a reader of the PNGs gets identical images: training from OUT and from DIR can be
compared.

The classes are the labels 0 to the largest label of either split; a label that no image has still
gets an (empty) folder, so that later folders keep their label, with a warning (tinycnn's IDX
reader counts at least ten classes; a set whose labels stop below 9 gets fewer folders here).
Folder names are the label numbers in decimal, zero-padded to one width when there are more than
ten classes ("00".."12" for 13), because a folder reader numbers classes in the sorted order of
their names and "10" sorts before "2". --names a,b,... names the folders instead: one name per
class, in label order, and their sorted order (by bytes, which puts digits before upper case
before lower case) must be the label order, or the folder reader would number the classes
differently from the labels; --allow-reorder writes them anyway (then the folder set's classes
are a permutation of the IDX labels).

--pad-to SIDE puts each picture in the middle of a SIDE x SIDE black frame instead (the smaller half
of the border above and left for an odd difference; 28x28 -> 32x32 adds two rows and columns of
zeros on each side), still grey. This is how `host train` gets exactly the pictures that
scripts/keras-reference.py makes with --pad-to SIDE --channels 3: a network whose input is
SIDExSIDEx3 takes these grey pictures as they are (they already have its size, so --fit does not
touch them; host's --fit pad would scale 28 up to 32 instead) and repeats their grey on the three
channels, as keras-reference.py does. For MLPerf Tiny's ResNet-8 on Fashion-MNIST:

    python3 scripts/idx-to-folders.py --data /usr/share/datasets/fashion-mnist \\
        --out /tmp/fashion-32 --pad-to 32
    host train --data /tmp/fashion-32 --arch 'input:32x32x3 conv3x3:16 residual ...'
    bash scripts/keras-reference.sh --data /usr/share/datasets/fashion-mnist \\
        --pad-to 32 --channels 3 --arch 'input:32x32x3 conv3x3:16 residual ...'

Deterministic (the same input gives the same files). An existing non-empty OUT is refused unless
--overwrite, which replaces OUT/train and OUT/test (nothing else in OUT). MNIST (70,000 images)
takes about 5 s (4.7 s of CPU) and gives 70,000 files of 93 to 375 bytes (19 MB; 276 MB on a file
system of 4 KiB blocks), measured on an otherwise idle 2-core 2.1 GHz Xeon server; reading the
IDX files back from the PNGs showed all 70,000 images identical.

Needs only Python 3 (standard library) and picture_sets.py beside this script.

    python3 scripts/idx-to-folders.py --data ../shared/data/mnist --out /tmp/mnist-folders
    python3 scripts/idx-to-folders.py --data DIR --out OUT \\
        --names 0-t-shirt,1-trouser,2-pullover,...,9-ankle-boot
"""

import argparse
import sys
from pathlib import Path

# No __pycache__ in scripts/ for the module below.
sys.dont_write_bytecode = True

from picture_sets import (
    GREY,
    SPLITS,
    DataError,
    check_folder_names,
    index_width,
    prepare_output,
    read_mnist_format,
    run,
    sorts_in_order,
    write_png,
)

PROGRAM = "idx-to-folders.py"


def default_names(classes):
    width = len(str(classes - 1)) if classes > 10 else 1
    return [f"{label:0{width}d}" for label in range(classes)]


def class_names(given, classes, allow_reorder):
    if given is None:
        return default_names(classes)
    names = given.split(",")
    if len(names) != classes:
        raise DataError(
            f"--names gives {len(names)} names, the set has {classes} classes (labels 0 to "
            f"{classes - 1}): give one name per class, in label order"
        )
    check_folder_names(names)
    if not sorts_in_order(names) and not allow_reorder:
        in_order = ",".join(sorted(names, key=str.encode))
        raise DataError(
            f"--names sort as {in_order}, not in label order: a folder reader numbers the classes "
            "in the sorted order of their folder names, so those folders would not have the IDX "
            "labels. Rename them (e.g. with a numeric prefix, zero-padded for more than ten "
            "classes: 00-name,01-name,...) or give --allow-reorder to write them anyway."
        )
    return names


def pad(pixels, rows, cols, side):
    """A rows x cols grey picture (bytes, row-major) in the middle of a side x side black frame,
    the smaller half of the border above and left (as keras-reference.py --pad-to frames it)."""
    top, left = (side - rows) // 2, (side - cols) // 2
    framed = bytearray(side * side)
    for row in range(rows):
        start = (top + row) * side + left
        framed[start : start + cols] = pixels[row * cols : (row + 1) * cols]
    return bytes(framed)


def main():
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", required=True, metavar="DIR",
                        help="directory holding the four IDX files (raw or .gz)")
    parser.add_argument("--out", required=True, metavar="OUT",
                        help="output folder (OUT/train/CLASS/*.png, OUT/test/CLASS/*.png)")
    parser.add_argument("--names", metavar="A,B,...",
                        help="class folder names in label order (default: the label numbers, "
                             "zero-padded to one width for more than ten classes)")
    parser.add_argument("--allow-reorder", action="store_true",
                        help="accept --names whose sorted order is not the label order")
    parser.add_argument("--pad-to", type=int, metavar="SIDE",
                        help="put each picture in the middle of a SIDE x SIDE black frame "
                             "(as keras-reference.py --pad-to does)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace OUT/train and OUT/test of an existing non-empty OUT")
    args = parser.parse_args()

    sets = read_mnist_format(args.data)
    rows, cols = sets["train"][0].rows, sets["train"][0].cols
    if args.pad_to is not None:
        for split in SPLITS:
            images = sets[split][0]
            if args.pad_to < max(images.rows, images.cols):
                raise DataError(f"--pad-to {args.pad_to}: the {split} pictures are "
                                f"{images.cols}x{images.rows}, larger than that")
    labels_seen = set(sets["train"][1]) | set(sets["test"][1])
    if not labels_seen:
        raise DataError(f"{args.data}: the set holds no images")
    classes = max(labels_seen) + 1
    names = class_names(args.names, classes, args.allow_reorder)
    prepare_output(args.out, SPLITS, args.overwrite)

    out = Path(args.out)
    counts = {split: [0] * classes for split in SPLITS}
    for split in SPLITS:
        images, labels = sets[split]
        folders = [out / split / name for name in names]
        for folder in folders:
            folder.mkdir(parents=True)
        width = index_width(images.count)
        size = images.size
        pixels = images.pixels
        for index, label in enumerate(labels):
            picture = pixels[index * size : (index + 1) * size]
            if args.pad_to is None:
                write_png(folders[label] / f"{index:0{width}d}.png", images.cols, images.rows,
                          picture, GREY)
            else:
                write_png(folders[label] / f"{index:0{width}d}.png", args.pad_to, args.pad_to,
                          pad(picture, images.rows, images.cols, args.pad_to), GREY)
            counts[split][label] += 1

    framed = f", framed to {args.pad_to}x{args.pad_to}" if args.pad_to is not None else ""
    print(f"{PROGRAM}: wrote {sum(counts['train'])} training and {sum(counts['test'])} test "
          f"pictures ({cols}x{rows} grey{framed}) in {classes} classes to {out}")
    print(f"  {'label':>5}  {'folder':<16} {'train':>7} {'test':>7}")
    for label, name in enumerate(names):
        print(f"  {label:>5}  {name:<16} {counts['train'][label]:>7} {counts['test'][label]:>7}")
    for label in range(classes):
        for split in SPLITS:
            if counts[split][label] == 0:
                print(f"{PROGRAM}: warning: class {label} ({names[label]}) has no {split} "
                      "pictures (its folder is empty)", file=sys.stderr)


if __name__ == "__main__":
    run(PROGRAM, main)
