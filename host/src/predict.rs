//! `host predict`: a user's picture of a digit -> the 28x28 input the
//! network expects.
//!
//! MNIST digits are white (255) on black (0). Pictures are converted to grey,
//! transparent pixels are composited onto white (as image viewers show
//! them), `--invert` turns dark ink on light paper into MNIST's polarity, the
//! picture is padded to a square with the background, then resized to 28x28.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use anyhow::{Context, bail};
use image::imageops::FilterType;
use image::{DynamicImage, GrayImage, ImageReader, Limits};
use tinycnn::arch::{INPUT_PIXELS, INPUT_SIDE, Image};

/// Largest accepted width or height, in pixels.
pub const MAX_SIDE: u32 = 16_384;
/// Largest accepted file, in bytes.
pub const MAX_FILE_BYTES: u64 = 64 << 20;
/// Largest memory the decoder may allocate.
const MAX_DECODE_BYTES: u64 = 512 << 20;

/// Reads and decodes a PNG, JPEG or PGM/PPM/PBM file, refusing empty,
/// oversized or unreadable files with a message that names the file.
pub fn decode(path: &Path) -> anyhow::Result<DynamicImage> {
    let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let size = file
        .metadata()
        .with_context(|| format!("{}: cannot read", path.display()))?
        .len();
    if size == 0 {
        bail!("{}: the file is empty", path.display());
    }
    if size > MAX_FILE_BYTES {
        bail!(
            "{}: {size} bytes is larger than the {MAX_FILE_BYTES}-byte limit for a picture",
            path.display()
        );
    }
    let mut bytes = Vec::with_capacity(size as usize);
    BufReader::new(file)
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let mut reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .with_context(|| format!("{}: cannot read", path.display()))?;
    if reader.format().is_none() {
        bail!("{}: not a PNG, JPEG or PGM/PPM picture", path.display());
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    reader
        .decode()
        .with_context(|| format!("{}: cannot decode the picture", path.display()))
}

/// Grey levels of a picture with alpha composited onto white.
fn grey_on_white(picture: &DynamicImage) -> GrayImage {
    let rgba = picture.to_rgba16();
    GrayImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0.map(f64::from);
        // ITU-R BT.601 luma, as `to_luma8` uses, in 16-bit precision.
        let luma = (0.299 * r + 0.587 * g + 0.114 * b) / 65535.0;
        let alpha = a / 65535.0;
        let composited = luma * alpha + (1.0 - alpha);
        image::Luma([(composited * 255.0).round() as u8])
    })
}

/// The 28x28 network input of a picture: grey, optionally inverted, padded
/// to a square with its background, resized.
pub fn to_input(picture: &DynamicImage, invert: bool) -> Image {
    let mut grey = grey_on_white(picture);
    if invert {
        image::imageops::invert(&mut grey);
    }
    let (width, height) = grey.dimensions();
    let side = width.max(height);
    // The background is the colour of the corners (most pictures have margins).
    let corners = [
        (0, 0),
        (width - 1, 0),
        (0, height - 1),
        (width - 1, height - 1),
    ];
    let background = (corners
        .iter()
        .map(|&(x, y)| u32::from(grey.get_pixel(x, y).0[0]))
        .sum::<u32>()
        / 4) as u8;
    let mut square = GrayImage::from_pixel(side, side, image::Luma([background]));
    image::imageops::overlay(
        &mut square,
        &grey,
        i64::from((side - width) / 2),
        i64::from((side - height) / 2),
    );
    let small = image::imageops::resize(
        &square,
        INPUT_SIDE as u32,
        INPUT_SIDE as u32,
        FilterType::Triangle,
    );
    let mut input = [0u8; INPUT_PIXELS];
    input.copy_from_slice(small.as_raw());
    input
}

/// Whether an input looks like dark ink on a light background (the mean
/// grey is above the middle), the opposite of MNIST's polarity.
pub fn looks_inverted(input: &Image) -> bool {
    input.iter().map(|&p| u32::from(p)).sum::<u32>() / INPUT_PIXELS as u32 > 127
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, LumaA, Rgba};

    fn save(dir: &Path, name: &str, picture: &DynamicImage) -> std::path::PathBuf {
        let path = dir.join(name);
        picture.save(&path).unwrap();
        path
    }

    #[test]
    fn white_on_black_passes_through_and_dark_on_light_inverts() {
        let mut picture = GrayImage::from_pixel(56, 56, image::Luma([0]));
        for y in 10..46 {
            for x in 26..30 {
                picture.put_pixel(x, y, image::Luma([255]));
            }
        }
        let input = to_input(&DynamicImage::ImageLuma8(picture.clone()), false);
        assert!(!looks_inverted(&input));
        assert_eq!(input[0], 0);
        assert!(input[14 * 28 + 14] > 200, "the stroke survives the resize");
        image::imageops::invert(&mut picture);
        let inverted = to_input(&DynamicImage::ImageLuma8(picture.clone()), false);
        assert!(looks_inverted(&inverted));
        assert_eq!(to_input(&DynamicImage::ImageLuma8(picture), true), input);
    }

    #[test]
    fn sixteen_bit_and_alpha_pictures_convert() {
        let wide = ImageBuffer::from_fn(40, 20, |x, _| {
            image::Luma([if x > 20 { 65535u16 } else { 0 }])
        });
        let input = to_input(&DynamicImage::ImageLuma16(wide), false);
        // Padded to 40x40 with the corner background (half black, half white: mid grey).
        assert_eq!(input.len(), 784);
        let transparent = ImageBuffer::from_pixel(10, 10, Rgba([0u8, 0, 0, 0]));
        assert!(
            to_input(&DynamicImage::ImageRgba8(transparent), false)
                .iter()
                .all(|&p| p == 255)
        );
        let opaque_ink = ImageBuffer::from_pixel(10, 10, LumaA([0u8, 255]));
        assert!(
            to_input(&DynamicImage::ImageLumaA8(opaque_ink), true)
                .iter()
                .all(|&p| p == 255)
        );
    }

    #[test]
    fn bad_files_give_one_line_errors() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.png");
        std::fs::write(&empty, b"").unwrap();
        assert!(
            format!("{:#}", decode(&empty).unwrap_err()).contains("empty.png: the file is empty")
        );
        let text = dir.path().join("notes.png");
        std::fs::write(&text, b"this is not a picture at all").unwrap();
        assert!(
            format!("{:#}", decode(&text).unwrap_err())
                .contains("not a PNG, JPEG or PGM/PPM picture")
        );
        let good = save(
            dir.path(),
            "good.png",
            &DynamicImage::ImageLuma8(GrayImage::new(8, 8)),
        );
        let mut bytes = std::fs::read(&good).unwrap();
        bytes.truncate(bytes.len() / 2);
        let truncated = dir.path().join("truncated.png");
        std::fs::write(&truncated, &bytes).unwrap();
        assert!(
            format!("{:#}", decode(&truncated).unwrap_err())
                .contains("truncated.png: cannot decode")
        );
        // A header that claims a 100000 x 100000 picture is refused, not allocated.
        let mut huge = Vec::new();
        huge.extend_from_slice(b"P5\n100000 100000\n255\n");
        huge.extend_from_slice(&[0; 64]);
        let huge_path = dir.path().join("huge.pgm");
        std::fs::write(&huge_path, &huge).unwrap();
        assert!(
            format!("{:#}", decode(&huge_path).unwrap_err()).contains("huge.pgm: cannot decode")
        );
        assert!(
            format!("{:#}", decode(&dir.path().join("missing.png")).unwrap_err())
                .contains("missing.png: cannot open")
        );
        assert!(decode(&good).is_ok());
    }
}
