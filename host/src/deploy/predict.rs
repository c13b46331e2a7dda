//! `host predict`: a user's picture -> the input the network expects (28x28
//! grey for MNIST), and the class the core gives it.
//!
//! MNIST digits are white (255) on black (0). Pictures are converted to grey
//! (or RGB for a colour network), transparent pixels are composited onto white
//! (as image viewers show them), `--invert` turns dark ink on light paper into
//! MNIST's polarity, the picture is padded to a square with the background,
//! then resized to the network's input.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use anyhow::{Context, bail};
use image::imageops::FilterType;
use image::{DynamicImage, GrayImage, ImageReader, Limits};
use tinycnn::Model;
use tinycnn::arch::Shape;

use crate::data::mnist::Mnist;

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

/// RGB of a picture with alpha composited onto white, in 16-bit precision.
fn rgb_on_white(picture: &DynamicImage) -> image::RgbImage {
    let rgba = picture.to_rgba16();
    image::RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0.map(f64::from);
        let alpha = a / 65535.0;
        let over_white = |c: f64| ((c / 65535.0 * alpha + (1.0 - alpha)) * 255.0).round() as u8;
        image::Rgb([over_white(r), over_white(g), over_white(b)])
    })
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

/// Pads `picture` to a square with the colour of its corners (most pictures
/// have margins) and resizes it to `side x side`.
fn square_and_resize<P>(
    picture: &image::ImageBuffer<P, Vec<u8>>,
    side_out: u32,
) -> image::ImageBuffer<P, Vec<u8>>
where
    P: image::Pixel<Subpixel = u8> + 'static,
{
    let (width, height) = picture.dimensions();
    let side = width.max(height);
    let corners = [
        (0, 0),
        (width - 1, 0),
        (0, height - 1),
        (width - 1, height - 1),
    ];
    let channels = usize::from(P::CHANNEL_COUNT);
    let mut background = [0u32; 4];
    for &(x, y) in &corners {
        for (sum, &value) in background
            .iter_mut()
            .zip(picture.get_pixel(x, y).channels())
        {
            *sum += u32::from(value);
        }
    }
    let background: Vec<u8> = background[..channels]
        .iter()
        .map(|&sum| (sum / 4) as u8)
        .collect();
    let mut square = image::ImageBuffer::from_pixel(side, side, *P::from_slice(&background));
    image::imageops::overlay(
        &mut square,
        picture,
        i64::from((side - width) / 2),
        i64::from((side - height) / 2),
    );
    image::imageops::resize(&square, side_out, side_out, FilterType::Triangle)
}

/// The network input of a picture for a network whose input is `shape`:
/// grey (one channel) or RGB (three), optionally inverted, padded to a square
/// with its background, resized; channels-last values 0-255.
pub fn to_input(picture: &DynamicImage, shape: Shape, invert: bool) -> Vec<u8> {
    // Non-square inputs take the picture as a square of the larger side, then crop.
    let side = shape.height.max(shape.width) as u32;
    let values = if shape.channels == 3 {
        let mut rgb = rgb_on_white(picture);
        if invert {
            image::imageops::invert(&mut rgb);
        }
        square_and_resize(&rgb, side).into_raw()
    } else {
        let mut grey = grey_on_white(picture);
        if invert {
            image::imageops::invert(&mut grey);
        }
        square_and_resize(&grey, side).into_raw()
    };
    let row = side as usize * shape.channels;
    values
        .chunks_exact(row)
        .take(shape.height)
        .flat_map(|line| line[..shape.width * shape.channels].iter().copied())
        .collect()
}

/// Whether an input looks like dark ink on a light background (the mean
/// value is above the middle), the opposite of MNIST's polarity.
pub fn looks_inverted(input: &[u8]) -> bool {
    input.iter().map(|&p| u64::from(p)).sum::<u64>() / input.len().max(1) as u64 > 127
}

/// What `host predict` classifies.
#[derive(Clone, Debug)]
pub struct PredictOptions {
    /// The model file.
    pub model: std::path::PathBuf,
    /// Pictures to classify.
    pub pictures: Vec<std::path::PathBuf>,
    /// Invert the pictures' values first.
    pub invert: bool,
    /// Test-set images to classify too.
    pub indices: Vec<usize>,
    /// Where the data set is (for `indices`).
    pub data_dir: std::path::PathBuf,
}

/// One classified input.
#[derive(Clone, Debug)]
pub struct Classified {
    /// The picture's path, or which test image.
    pub name: String,
    /// The predicted class.
    pub class: usize,
    /// Softmax probability of each class.
    pub probabilities: Vec<f32>,
}

/// `host predict`: every picture and test image, in order, with the warnings
/// (inverted-looking pictures) to print.
pub fn run(options: &PredictOptions) -> anyhow::Result<(Vec<Classified>, Vec<String>)> {
    if options.pictures.is_empty() && options.indices.is_empty() {
        bail!("nothing to classify: give picture files and/or --index N");
    }
    let bytes = super::read_model(&options.model)?;
    let model = Model::from_bytes(&bytes)?;
    let shape = model.architecture().input();
    let mut inputs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut warnings = Vec::new();
    for path in &options.pictures {
        let input = to_input(&decode(path)?, shape, options.invert);
        if looks_inverted(&input) {
            warnings.push(format!(
                "{} looks like a dark picture on a light background; the network expects light \
                 on dark, as in MNIST{}",
                path.display(),
                if options.invert { "" } else { ": try --invert" }
            ));
        }
        inputs.push((path.display().to_string(), input));
    }
    if !options.indices.is_empty() {
        let data = Mnist::load(&options.data_dir)?;
        super::eval::check_data_fits(model.architecture(), &data)?;
        for &index in &options.indices {
            let pixels = data.test.image(index).with_context(|| {
                format!(
                    "--index {index} is past the last test image ({})",
                    data.test.len().saturating_sub(1)
                )
            })?;
            let label = data.test.labels[index];
            inputs.push((
                format!("test image {index} (label {label})"),
                pixels.to_vec(),
            ));
        }
    }
    let classes = model.architecture().classes();
    let mut classified = Vec::new();
    for (name, input) in inputs {
        let mut probabilities = vec![0f32; classes];
        let class = match &model {
            Model::Int8(m) => {
                let mut scratch = vec![0i8; m.scratch_bytes()];
                let p = m.classify(&input, &mut scratch)?;
                m.probabilities(p.logits, &mut probabilities);
                p.class
            }
            Model::F32(m) => {
                let mut scratch = vec![0f32; m.scratch_len()];
                let p = m.classify(&input, &mut scratch)?;
                m.probabilities(p.logits, &mut probabilities);
                p.class
            }
        };
        classified.push(Classified {
            name,
            class,
            probabilities,
        });
    }
    Ok((classified, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, LumaA, Rgba};

    const MNIST: Shape = Shape::new(28, 28, 1);

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
        let input = to_input(&DynamicImage::ImageLuma8(picture.clone()), MNIST, false);
        assert!(!looks_inverted(&input));
        assert_eq!(input[0], 0);
        assert!(input[14 * 28 + 14] > 200, "the stroke survives the resize");
        image::imageops::invert(&mut picture);
        let inverted = to_input(&DynamicImage::ImageLuma8(picture.clone()), MNIST, false);
        assert!(looks_inverted(&inverted));
        assert_eq!(
            to_input(&DynamicImage::ImageLuma8(picture), MNIST, true),
            input
        );
    }

    #[test]
    fn sixteen_bit_and_alpha_pictures_convert() {
        let wide = ImageBuffer::from_fn(40, 20, |x, _| {
            image::Luma([if x > 20 { 65535u16 } else { 0 }])
        });
        let input = to_input(&DynamicImage::ImageLuma16(wide), MNIST, false);
        // Padded to 40x40 with the corner background (half black, half white: mid grey).
        assert_eq!(input.len(), 784);
        let transparent = ImageBuffer::from_pixel(10, 10, Rgba([0u8, 0, 0, 0]));
        assert!(
            to_input(&DynamicImage::ImageRgba8(transparent), MNIST, false)
                .iter()
                .all(|&p| p == 255)
        );
        let opaque_ink = ImageBuffer::from_pixel(10, 10, LumaA([0u8, 255]));
        assert!(
            to_input(&DynamicImage::ImageLumaA8(opaque_ink), MNIST, true)
                .iter()
                .all(|&p| p == 255)
        );
    }

    #[test]
    fn colour_networks_get_rgb_and_other_sizes() {
        let red = ImageBuffer::from_pixel(20, 10, Rgba([200u8, 10, 20, 255]));
        let input = to_input(&DynamicImage::ImageRgba8(red), Shape::new(12, 12, 3), false);
        assert_eq!(input.len(), 12 * 12 * 3);
        // The middle of the picture keeps its colour, channels-last.
        let middle = (6 * 12 + 6) * 3;
        assert_eq!(&input[middle..middle + 3], &[200, 10, 20]);
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
