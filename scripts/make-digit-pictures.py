#!/usr/bin/env python3
"""Render printed digits as pictures a user might give `host predict`.

Digits 0-9 in common fonts, their ink 35 % of the picture's height, in six conditions:

  dark-on-light          dark ink on light paper, centred
  light-on-dark          light ink on dark paper, centred
  dark-on-light-off      dark on light, off-centre
  light-on-dark-off      light on dark, off-centre
  transparent-white      white ink on a transparent background
  transparent-black      black ink on a transparent background

Pictures are 200x200, 300x200 or 200x300; paper and ink levels vary a little. The output is
deterministic (fixed seed), in 8-bit grey PNGs (grey + alpha for the transparent ones), named
CONDITION-FONT-WxH-DIGIT.png. host/tests/predict_pictures.rs classifies them. One more, in
interlaced/, is the first dark-on-light picture saved interlaced (Adam7), which Pillow cannot write.

Needs Python 3 and Pillow (pip install pillow), and the fonts of the Debian packages
fonts-dejavu-core, fonts-liberation and fonts-freefont-ttf (or --fonts-dir DIR holding the same
TTF files).

    python3 scripts/make-digit-pictures.py [--out host/tests/pictures]
"""

import argparse
import random
import struct
import zlib
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

FONTS = {
    "dejavu-sans": "dejavu/DejaVuSans.ttf",
    "dejavu-serif": "dejavu/DejaVuSerif.ttf",
    "liberation-sans": "liberation/LiberationSans-Regular.ttf",
    "liberation-serif": "liberation/LiberationSerif-Regular.ttf",
    "liberation-mono": "liberation/LiberationMono-Regular.ttf",
    "freesans": "freefont/FreeSans.ttf",
    "liberation-sans-bold": "liberation/LiberationSans-Bold.ttf",
    "liberation-serif-italic": "liberation/LiberationSerif-Italic.ttf",
}
CONDITIONS = [
    "dark-on-light",
    "light-on-dark",
    "dark-on-light-off",
    "light-on-dark-off",
    "transparent-white",
    "transparent-black",
]
SIZES = [(200, 200), (300, 200), (200, 300)]
INK_FRACTION = 0.35


def ink_mask(font_path, digit, height):
    """The digit's coverage (0-255), cropped to its ink, `height` pixels high."""
    size = height
    for _ in range(8):
        font = ImageFont.truetype(font_path, size)
        canvas = Image.new("L", (size * 2, size * 2), 0)
        ImageDraw.Draw(canvas).text((size // 2, size // 4), digit, font=font, fill=255)
        box = canvas.getbbox()
        ink_height = box[3] - box[1]
        if ink_height == height:
            break
        # Ink height grows in proportion to the font size.
        size = max(1, round(size * height / ink_height))
    return canvas.crop(box)


def picture(condition, mask, width, height, rng):
    mask_w, mask_h = mask.size
    if condition.endswith("-off"):
        # Anywhere the digit fits with a small margin, away from the centre.
        while True:
            left = rng.randint(4, width - mask_w - 4)
            top = rng.randint(4, height - mask_h - 4)
            dx = left + mask_w / 2 - width / 2
            dy = top + mask_h / 2 - height / 2
            if max(abs(dx) / width, abs(dy) / height) > 0.15:
                break
    else:
        left, top = (width - mask_w) // 2, (height - mask_h) // 2
    coverage = Image.new("L", (width, height), 0)
    coverage.paste(mask, (left, top))
    if condition.startswith("transparent"):
        # The colour of transparent pixels is the ink's, as most editors store it.
        ink = 255 if condition == "transparent-white" else 0
        return Image.merge("LA", (Image.new("L", (width, height), ink), coverage))
    paper, ink = rng.choice([255, 240, 225]), rng.choice([0, 20, 40])
    if condition.startswith("light-on-dark"):
        paper, ink = 255 - paper, 255 - ink
    # coverage 0 -> paper, 255 -> ink.
    return Image.composite(
        Image.new("L", (width, height), ink), Image.new("L", (width, height), paper), coverage
    )


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
         (0, 1, 1, 2)]


def save_interlaced(image, path):
    """An 8-bit grey picture as an Adam7-interlaced PNG, every row unfiltered."""
    width, height = image.size
    pixels = image.tobytes()
    data = bytearray()
    for x0, y0, dx, dy in ADAM7:
        columns = range(x0, width, dx)
        if not columns:
            continue
        for y in range(y0, height, dy):
            data.append(0)
            data.extend(pixels[y * width + x] for x in columns)

    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 1)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(bytes(data), 9)) + chunk(b"IEND", b""))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("host/tests/pictures"))
    parser.add_argument("--fonts-dir", type=Path, default=Path("/usr/share/fonts/truetype"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(16)
    count = 0
    for condition in CONDITIONS:
        for font_index, (font_name, font_file) in enumerate(FONTS.items()):
            for digit in range(10):
                width, height = SIZES[(font_index + digit) % len(SIZES)]
                mask = ink_mask(str(args.fonts_dir / font_file), str(digit),
                                round(INK_FRACTION * height))
                image = picture(condition, mask, width, height, rng)
                name = f"{condition}-{font_name}-{width}x{height}-{digit}.png"
                image.save(args.out / name, optimize=True)
                count += 1
                if count == 1:
                    (args.out / "interlaced").mkdir(exist_ok=True)
                    save_interlaced(image, args.out / "interlaced" / name)
    print(f"wrote {count} pictures to {args.out}")


if __name__ == "__main__":
    main()
