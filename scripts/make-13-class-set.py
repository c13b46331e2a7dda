#!/usr/bin/env python3
"""Make a 13-class set: MNIST's ten digits plus three Fashion-MNIST classes, as IDX and as folders.

make-13-class-set.py takes all of MNIST (--mnist DIR) as classes 0-9 and all the training and test
images of three Fashion-MNIST classes (--fashion DIR) as classes 10-12: by default Trouser (1), Bag
(8) and Ankle boot (9), chosen because they resemble no digit much. The three are numbered in the
alphabetical order of their folder names, 10 ankle-boot, 11 bag, 12 trouser, so that sorting the
folder names by bytes (digits before lower-case letters) gives exactly the labels 0..12, as a
folder reader numbers classes. It writes

  OUT/idx/      the four IDX files (raw) with labels 0-12: 78,000 training images (60,000 + 18,000)
                and 13,000 test images (10,000 + 3,000), each split shuffled deterministically
                (random.Random(--seed), default 13)
  OUT/folders/  the same images as 8-bit grey 28x28 PNGs, OUT/folders/{train,test}/NAME/NNNNN.png,
                NAME one of 0..9, ankle-boot, bag, trouser and NNNNN the image's index in the
                shuffled IDX file (pixels exactly the IDX bytes), so training from OUT/idx and
                from OUT/folders can be compared
  OUT/classes.txt  the 13 folder names in label order, one a line

and prints the images per class (`host data --data OUT/idx` reads the IDX set as 13 classes, a
network for it ending in dense:13). --fashion-classes picks other Fashion-MNIST classes (their label
numbers: 0 t-shirt, 1 trouser, 2 pullover, 3 dress, 4 coat, 5 sandal, 6 shirt, 7 sneaker, 8 bag,
9 ankle-boot), numbered from 10 in the alphabetical order of those names.

Deterministic. An existing non-empty OUT is refused unless --overwrite, which replaces OUT/idx,
OUT/folders and OUT/classes.txt (nothing else in OUT). About 9 s (7.5 s of CPU) on an otherwise
idle 2-core 2.1 GHz Xeon server, for 69 MB of IDX files and 91,000 PNGs of 30 MB (359 MB on a file
system of 4 KiB blocks).

Needs only Python 3 (standard library) and picture_sets.py beside this script. MNIST and
Fashion-MNIST in IDX form (raw or .gz; on Debian: apt install dataset-fashion-mnist puts the latter
in /usr/share/datasets/fashion-mnist).

    python3 scripts/make-13-class-set.py --mnist ../shared/data/mnist \\
        --fashion /usr/share/datasets/fashion-mnist --out /tmp/mnist13
"""

import argparse
import random
import sys
from pathlib import Path

# No __pycache__ in scripts/ for the module below.
sys.dont_write_bytecode = True

from picture_sets import (
    GREY,
    SPLITS,
    DataError,
    Images,
    index_width,
    prepare_output,
    read_mnist_format,
    run,
    sorts_in_order,
    write_mnist_format,
    write_png,
)

PROGRAM = "make-13-class-set.py"
FASHION_NAMES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
                 "bag", "ankle-boot"]


def parse_fashion_classes(text):
    try:
        chosen = [int(part) for part in text.split(",")]
    except ValueError:
        raise DataError(f"--fashion-classes {text!r}: give label numbers 0-9, e.g. 1,8,9") from None
    if any(not 0 <= label <= 9 for label in chosen) or len(set(chosen)) != len(chosen):
        raise DataError(f"--fashion-classes {text!r}: give distinct label numbers 0-9, e.g. 1,8,9")
    return sorted(chosen, key=lambda label: FASHION_NAMES[label])


def main():
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--mnist", required=True, metavar="DIR",
                        help="MNIST's four IDX files (raw or .gz)")
    parser.add_argument("--fashion", required=True, metavar="DIR",
                        help="Fashion-MNIST's four IDX files (raw or .gz)")
    parser.add_argument("--out", required=True, metavar="OUT",
                        help="output folder (OUT/idx, OUT/folders, OUT/classes.txt)")
    parser.add_argument("--fashion-classes", default="1,8,9", metavar="A,B,...",
                        help="Fashion-MNIST labels to add as classes 10, 11, ... "
                             "(default 1,8,9: trouser, bag, ankle-boot)")
    parser.add_argument("--seed", type=int, default=13, help="shuffling seed (default 13)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace OUT/idx, OUT/folders and OUT/classes.txt of an existing "
                             "non-empty OUT")
    args = parser.parse_args()

    chosen = parse_fashion_classes(args.fashion_classes)
    names = [str(digit) for digit in range(10)] + [FASHION_NAMES[label] for label in chosen]
    assert sorts_in_order(names), names
    new_label = {fashion: 10 + i for i, fashion in enumerate(chosen)}

    mnist = read_mnist_format(args.mnist)
    fashion = read_mnist_format(args.fashion)
    for source, sets in ((args.mnist, mnist), (args.fashion, fashion)):
        for split in SPLITS:
            images, labels = sets[split]
            if (images.rows, images.cols) != (28, 28):
                raise DataError(f"{source}: {split} images are {images.rows}x{images.cols}, "
                                "not 28x28")
            if max(labels, default=0) > 9:
                raise DataError(f"{source}: {split} labels up to {max(labels)}, not 0-9")
    prepare_output(args.out, ["idx", "folders", "classes.txt"], args.overwrite)

    rng = random.Random(args.seed)
    combined = {}
    for split in SPLITS:
        # (source images, index in them, new label) of every image, MNIST then Fashion-MNIST.
        m_images, m_labels = mnist[split]
        f_images, f_labels = fashion[split]
        entries = [(m_images, i, label) for i, label in enumerate(m_labels)]
        entries += [(f_images, i, new_label[label]) for i, label in enumerate(f_labels)
                    if label in new_label]
        rng.shuffle(entries)
        pixels = b"".join(images.image(i) for images, i, _ in entries)
        labels = bytes(label for _, _, label in entries)
        combined[split] = (Images(len(entries), 28, 28, pixels), labels)

    out = Path(args.out)
    (out / "idx").mkdir()
    write_mnist_format(out / "idx", combined)
    (out / "classes.txt").write_text("".join(name + "\n" for name in names))
    counts = {}
    for split in SPLITS:
        images, labels = combined[split]
        folders = [out / "folders" / split / name for name in names]
        for folder in folders:
            folder.mkdir(parents=True)
        width = index_width(images.count)
        for index, label in enumerate(labels):
            write_png(folders[label] / f"{index:0{width}d}.png", 28, 28, images.image(index), GREY)
        counts[split] = [labels.count(label) for label in range(len(names))]

    print(f"{PROGRAM}: wrote {images_summary(combined)} in {len(names)} classes to {out}/idx "
          f"(IDX) and {out}/folders (PNG)")
    print(f"  {'label':>5}  {'folder':<12} {'source':<24} {'train':>7} {'test':>7}")
    for label, name in enumerate(names):
        source = f"MNIST {label}" if label < 10 else f"Fashion-MNIST {chosen[label - 10]}"
        print(f"  {label:>5}  {name:<12} {source:<24} {counts['train'][label]:>7} "
              f"{counts['test'][label]:>7}")
    print(f"  {'':>5}  {'total':<12} {'':<24} {sum(counts['train']):>7} {sum(counts['test']):>7}")


def images_summary(combined):
    return (f"{combined['train'][0].count} training and {combined['test'][0].count} test images "
            "(28x28 grey)")


if __name__ == "__main__":
    run(PROGRAM, main)
