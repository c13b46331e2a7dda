//! `host predict`: a user's picture -> the input the network expects, and the class the core
//! gives it.
//!
//! MNIST's digits are light ink (255) on black (0), each scaled to fit a 20x20 box keeping its
//! aspect ratio (anti-aliased) and placed in the 28x28 image with its centre of mass at the
//! centre (LeCun et al.). A network trained on them misclassifies most pictures that are not
//! like that: a digit filling a third of the picture, off centre, or dark on light. So for a
//! network whose input is 28x28 grey, [`prepare`] repeats that preparation on each picture:
//!
//! 1. transparent pixels take the background's colour: the median colour of the opaque pixels on
//!    the picture's border, or, when the border is transparent, black behind light ink and white
//!    behind dark ink (the ink being the opaque pixels);
//! 2. a light background means dark ink on light paper, which is inverted;
//! 3. the ink is how much each pixel differs from the paper, stretched so the strongest is 255;
//! 4. it is cropped to its bounding box, scaled to fit 20x20, and placed in 28x28 with its centre
//!    of mass at the centre.
//!
//! Other networks (colour, or other input sizes), and `--raw`, get the plain preparation: the
//! picture padded to a square with its background and resized to the input.
//!
//! Any picture up to [`MAX_SIDE`] pixels a side is reduced to at most [`WORKING_SIDE`] a side by
//! area averaging while it is decoded: PNGs row by row, in a few MB whatever their size; other
//! formats once decoded whole, which [`MAX_DECODE_BYTES`] bounds.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use image::imageops::{self, FilterType};
use image::{
    DynamicImage, GenericImageView, ImageBuffer, ImageDecoder, ImageFormat, ImageReader, Limits,
    Luma, Rgb,
};
use tinycnn::Model;
use tinycnn::arch::Shape;

use crate::data::{DataSet, Fit, FolderOptions};

/// Largest accepted width or height, in pixels.
pub const MAX_SIDE: u32 = 16_384;
/// Largest accepted file, in bytes.
pub const MAX_FILE_BYTES: u64 = 64 << 20;
/// Largest decoded picture, in bytes, for the formats decoded whole before they are reduced
/// (JPEG, PGM/PPM, interlaced PNG).
pub const MAX_DECODE_BYTES: u64 = 192 << 20;
/// Longer side of a picture once reduced: a digit a third of it high still has 340 pixels, far
/// more than the 20 it is scaled to.
pub const WORKING_SIDE: u32 = 1024;
/// The side of MNIST's images, and of the box their digits were scaled to fit.
const MNIST_SIDE: u32 = 28;
const MNIST_BOX: u32 = 20;
/// Smallest difference from the paper (0 to 1) that counts as ink; below it a picture is blank,
/// whatever noise or compression artefacts it has.
const MIN_CONTRAST: f32 = 0.1;
/// Share of the strongest ink a pixel needs to count towards the ink's bounding box, so that the
/// faint rim of anti-aliasing, compression noise or uneven lighting does not widen the box.
const INK_LEVEL: f32 = 0.35;

/// A decoded picture, reduced: RGBA values 0 to 1 with the colour premultiplied by alpha, so
/// averaging pixels does not mix in the colour transparent pixels happen to store.
pub type Picture = image::Rgba32FImage;

/// Grey values 0 to 1.
type Grey = ImageBuffer<Luma<f32>, Vec<f32>>;

/// Reads and decodes a PNG, JPEG, BMP, GIF (its first frame), TIFF, WebP or PGM/PPM/PBM file
/// (whatever its name says: its first bytes decide) into a [`Picture`] of at most
/// [`WORKING_SIDE`] pixels a side, refusing empty, oversized or unreadable files with a message
/// that names the file.
pub fn decode(path: &Path) -> anyhow::Result<Picture> {
    let name = path.display();
    let file = File::open(path).with_context(|| format!("{name}: cannot open"))?;
    let size = file
        .metadata()
        .with_context(|| format!("{name}: cannot read"))?
        .len();
    if size == 0 {
        bail!("{name}: the file is empty");
    }
    if size > MAX_FILE_BYTES {
        bail!("{name}: {size} bytes is larger than the {MAX_FILE_BYTES}-byte limit for a picture");
    }
    let reader = ImageReader::new(BufReader::new(file))
        .with_guessed_format()
        .with_context(|| format!("{name}: cannot read"))?;
    match reader.format() {
        None => bail!("{name}: not a PNG, JPEG, BMP, GIF, TIFF, WebP or PGM/PPM picture"),
        Some(ImageFormat::Png) => decode_png(reader.into_inner()),
        Some(ImageFormat::Jpeg) => {
            // A JPEG decoder fills a scan cut short with grey and reports nothing.
            let mut bytes = Vec::with_capacity(size as usize);
            let mut file = reader.into_inner();
            file.rewind()
                .with_context(|| format!("{name}: cannot read"))?;
            std::io::Read::read_to_end(&mut file, &mut bytes)
                .with_context(|| format!("{name}: cannot read"))?;
            if !crate::data::folders::jpeg_is_complete(&bytes) {
                bail!("{name}: the JPEG is cut short (no end-of-image marker after its last scan)");
            }
            decode_whole(ImageReader::with_format(
                std::io::Cursor::new(bytes),
                ImageFormat::Jpeg,
            ))
        }
        Some(_) => decode_whole(reader),
    }
    .with_context(|| name.to_string())
}

fn check_sides(width: u32, height: u32) -> anyhow::Result<()> {
    if width == 0 || height == 0 {
        bail!("a {width} x {height} picture has no pixels");
    }
    if width > MAX_SIDE || height > MAX_SIDE {
        bail!("a {width} x {height} picture is larger than the limit of {MAX_SIDE} pixels a side");
    }
    Ok(())
}

fn check_decoded_bytes(width: u32, height: u32, bytes: u64) -> anyhow::Result<()> {
    if bytes > MAX_DECODE_BYTES {
        bail!(
            "a {width} x {height} picture takes {} MiB decoded, more than the {} MiB limit for \
             JPEG, PGM/PPM and interlaced PNG: scale it down, or save it as a non-interlaced PNG",
            bytes.div_ceil(1 << 20),
            MAX_DECODE_BYTES >> 20
        );
    }
    Ok(())
}

/// A PNG, row by row into [`Shrink`] unless it is interlaced (Adam7 delivers every row in
/// several passes).
fn decode_png(file: impl BufRead + Seek) -> anyhow::Result<Picture> {
    const CANNOT: &str = "cannot decode the picture";
    let mut decoder = png::Decoder::new(file);
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().context(CANNOT)?;
    let (width, height, interlaced) = {
        let info = reader.info();
        (info.width, info.height, info.interlaced)
    };
    check_sides(width, height)?;
    let channels = reader.output_color_type().0.samples();
    let mut shrink = Shrink::new(width, height);
    if interlaced {
        let bytes = reader.output_buffer_size().unwrap_or(usize::MAX);
        check_decoded_bytes(width, height, bytes as u64)?;
        let mut buffer = vec![0; bytes];
        let frame = reader.next_frame(&mut buffer).context(CANNOT)?;
        for (y, row) in (0..height).zip(buffer.chunks_exact(frame.line_size)) {
            shrink.push_row(y, rgba_pixels(row, channels));
        }
    } else {
        let mut y = 0;
        while let Some(row) = reader.next_row().context(CANNOT)? {
            shrink.push_row(y, rgba_pixels(row.data(), channels));
            y += 1;
        }
    }
    shrink.finish().context(CANNOT)
}

/// RGBA of 8-bit grey, grey + alpha, RGB or RGBA samples.
fn rgba_pixels(samples: &[u8], channels: usize) -> impl Iterator<Item = [u8; 4]> + '_ {
    samples.chunks_exact(channels).map(|pixel| match *pixel {
        [v] => [v, v, v, 255],
        [v, a] => [v, v, v, a],
        [r, g, b] => [r, g, b, 255],
        [r, g, b, a] => [r, g, b, a],
        _ => unreachable!("PNG pixels have 1 to 4 samples"),
    })
}

/// JPEG and PGM/PPM: decoded whole, within [`MAX_DECODE_BYTES`], then reduced.
fn decode_whole(mut reader: ImageReader<impl BufRead + Seek>) -> anyhow::Result<Picture> {
    const CANNOT: &str = "cannot decode the picture";
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let decoder = reader.into_decoder().context(CANNOT)?;
    let (width, height) = decoder.dimensions();
    check_sides(width, height)?;
    check_decoded_bytes(width, height, decoder.total_bytes())?;
    Ok(reduce(
        &DynamicImage::from_decoder(decoder).context(CANNOT)?,
    ))
}

/// A decoded picture as a [`Picture`], converted one pixel at a time so that a large picture
/// needs no second copy in another pixel type.
fn reduce(picture: &DynamicImage) -> Picture {
    let (width, height) = picture.dimensions();
    let mut shrink = Shrink::new(width, height);
    for y in 0..height {
        shrink.push_row(y, (0..width).map(|x| picture.get_pixel(x, y).0));
    }
    shrink
        .finish()
        .expect("every row of a decoded picture is pushed")
}

/// Area-averages rows of RGBA8 pixels, given top to bottom, into a [`Picture`] of at most
/// [`WORKING_SIDE`] pixels a side. Each source pixel counts towards the one output pixel it
/// falls in, so only one output row of sums is kept.
struct Shrink {
    width: u64,
    height: u64,
    out_width: u32,
    out_height: u32,
    /// The output row being summed.
    row: u32,
    /// Per output column: premultiplied red, green, blue (in 255 x 255ths), alpha, pixel count.
    sums: Vec<[u64; 5]>,
    pixels: Vec<f32>,
}

impl Shrink {
    fn new(width: u32, height: u32) -> Self {
        let longer = u64::from(width.max(height));
        let fit = |side: u32| {
            if longer <= u64::from(WORKING_SIDE) {
                side
            } else {
                (u64::from(side) * u64::from(WORKING_SIDE))
                    .div_ceil(longer)
                    .max(1) as u32
            }
        };
        let (out_width, out_height) = (fit(width), fit(height));
        Self {
            width: u64::from(width),
            height: u64::from(height),
            out_width,
            out_height,
            row: 0,
            sums: vec![[0; 5]; out_width as usize],
            pixels: Vec::with_capacity(out_width as usize * out_height as usize * 4),
        }
    }

    fn push_row(&mut self, y: u32, pixels: impl Iterator<Item = [u8; 4]>) {
        let out_y = (u64::from(y) * u64::from(self.out_height) / self.height) as u32;
        if out_y != self.row {
            self.flush();
            self.row = out_y;
        }
        for (x, [r, g, b, a]) in (0..self.width).zip(pixels) {
            let out_x = (x * u64::from(self.out_width) / self.width) as usize;
            let alpha = u64::from(a);
            let sum = &mut self.sums[out_x];
            sum[0] += u64::from(r) * alpha;
            sum[1] += u64::from(g) * alpha;
            sum[2] += u64::from(b) * alpha;
            sum[3] += alpha;
            sum[4] += 1;
        }
    }

    fn flush(&mut self) {
        for sum in &mut self.sums {
            let count = sum[4].max(1) as f32;
            let colour = |s: u64| s as f32 / (count * 65025.0);
            self.pixels.extend([
                colour(sum[0]),
                colour(sum[1]),
                colour(sum[2]),
                sum[3] as f32 / (count * 255.0),
            ]);
            *sum = [0; 5];
        }
    }

    /// The picture, or `None` when rows were missing.
    fn finish(mut self) -> Option<Picture> {
        self.flush();
        Picture::from_raw(self.out_width, self.out_height, self.pixels)
    }
}

/// Which pictures hold dark ink on light paper.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Polarity {
    /// Those whose background is light (`host predict` without a flag).
    #[default]
    Auto,
    /// All of them (`--invert`).
    DarkInk,
    /// None (`--no-invert`).
    LightInk,
}

impl Polarity {
    fn flag(self) -> &'static str {
        match self {
            Self::Auto => "",
            Self::DarkInk => "--invert",
            Self::LightInk => "--no-invert",
        }
    }
}

/// How pictures become network inputs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Preparation {
    /// Which pictures are inverted.
    pub polarity: Polarity,
    /// Only pad and resize, for pictures already in the form of the training images.
    pub raw: bool,
}

/// A picture made into a network input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prepared {
    /// Channels-last values 0 to 255.
    pub input: Vec<u8>,
    /// What looks wrong with the picture, for the user.
    pub warnings: Vec<String>,
}

/// The input of a network whose input is `shape` for `picture`: prepared as MNIST's digits for
/// 28x28 grey networks, else (or with `raw`) padded to a square with its background and resized.
/// A blank picture is an error, unless only padded and resized.
pub fn prepare(
    picture: &Picture,
    shape: Shape,
    preparation: Preparation,
) -> anyhow::Result<Prepared> {
    let mnist_like = shape == Shape::new(MNIST_SIDE as usize, MNIST_SIDE as usize, 1);
    if mnist_like && !preparation.raw {
        prepare_as_mnist(picture, preparation.polarity)
    } else {
        Ok(pad_and_resize(
            picture,
            shape,
            preparation.polarity,
            mnist_like,
        ))
    }
}

/// ITU-R BT.601 luma, as the image crate's grey conversion.
fn luma([r, g, b]: [f32; 3]) -> f32 {
    0.299 * r + 0.587 * g + 0.114 * b
}

fn median(mut values: Vec<f32>) -> f32 {
    values.sort_unstable_by(f32::total_cmp);
    values[values.len() / 2]
}

/// The colour behind the ink, which transparent pixels take: the median colour of the opaque
/// pixels on the picture's outermost ring, or, when most of that ring is transparent, black
/// behind light ink and white behind dark ink, the ink's lightness being the opaque pixels'
/// unless `polarity` says it.
fn backdrop(picture: &Picture, polarity: Polarity) -> [f32; 3] {
    let (width, height) = picture.dimensions();
    let mut opaque: [Vec<f32>; 3] = Default::default();
    let mut ring = 0;
    for (x, y, pixel) in picture.enumerate_pixels() {
        if x == 0 || y == 0 || x + 1 == width || y + 1 == height {
            ring += 1;
            let [r, g, b, a] = pixel.0;
            if a >= 0.5 {
                for (channel, value) in opaque.iter_mut().zip([r, g, b]) {
                    channel.push(value / a);
                }
            }
        }
    }
    if 2 * opaque[0].len() >= ring {
        return opaque.map(median);
    }
    let light_ink = match polarity {
        Polarity::DarkInk => false,
        Polarity::LightInk => true,
        Polarity::Auto => {
            let (ink, alpha) = picture.pixels().fold((0.0, 0.0), |(ink, alpha), pixel| {
                let [r, g, b, a] = pixel.0;
                (ink + luma([r, g, b]), alpha + a)
            });
            ink >= 0.5 * alpha
        }
    };
    if light_ink { [0.0; 3] } else { [1.0; 3] }
}

/// The picture's grey levels over `backdrop`.
fn grey_over(picture: &Picture, backdrop: [f32; 3]) -> Grey {
    let behind = luma(backdrop);
    Grey::from_fn(picture.width(), picture.height(), |x, y| {
        let [r, g, b, a] = picture.get_pixel(x, y).0;
        Luma([luma([r, g, b]) + (1.0 - a) * behind])
    })
}

fn describe(light: bool) -> &'static str {
    if light { "light" } else { "dark" }
}

fn prepare_as_mnist(picture: &Picture, polarity: Polarity) -> anyhow::Result<Prepared> {
    let backdrop = backdrop(picture, polarity);
    let grey = grey_over(picture, backdrop);
    let mut paper = luma(backdrop);
    let light_border = paper >= 0.5;
    let light_ink = match polarity {
        Polarity::Auto => !light_border,
        Polarity::DarkInk => false,
        Polarity::LightInk => true,
    };
    let mut warnings = Vec::new();
    if light_ink == light_border {
        // The border is not the paper (a digit touching the edges, a frame): the flag says
        // which side the paper is on, and the most extreme grey there is taken for it.
        let levels = grey.pixels().map(|pixel| pixel.0[0]);
        paper = if light_ink {
            levels.fold(f32::INFINITY, f32::min)
        } else {
            levels.fold(f32::NEG_INFINITY, f32::max)
        };
        warnings.push(format!(
            "its border is {}, yet {} takes it as {} ink on {} paper",
            describe(light_border),
            polarity.flag(),
            describe(light_ink),
            describe(!light_ink)
        ));
    }
    let mut ink = Grey::from_fn(grey.width(), grey.height(), |x, y| {
        let level = grey.get_pixel(x, y).0[0];
        Luma([if light_ink {
            level - paper
        } else {
            paper - level
        }
        .max(0.0)])
    });
    let peak = ink.pixels().map(|pixel| pixel.0[0]).fold(0.0, f32::max);
    if peak < MIN_CONTRAST {
        bail!("the picture is blank: nothing on it differs from its background");
    }
    for pixel in ink.pixels_mut() {
        pixel.0[0] = (pixel.0[0] / peak).min(1.0);
    }

    let (mut left, mut top, mut right, mut bottom) = (u32::MAX, u32::MAX, 0, 0);
    for (x, y, _) in ink
        .enumerate_pixels()
        .filter(|(_, _, pixel)| pixel.0[0] > INK_LEVEL)
    {
        (left, top, right, bottom) = (left.min(x), top.min(y), right.max(x), bottom.max(y));
    }
    let (ink_width, ink_height) = (right - left + 1, bottom - top + 1);
    let scale = MNIST_BOX as f32 / ink_width.max(ink_height) as f32;
    let fit = |side: u32| ((side as f32 * scale).round() as u32).clamp(1, MNIST_BOX);
    let glyph = imageops::resize(
        &*imageops::crop_imm(&ink, left, top, ink_width, ink_height),
        fit(ink_width),
        fit(ink_height),
        FilterType::Triangle,
    );

    let (mass, x_moment, y_moment) =
        glyph
            .enumerate_pixels()
            .fold((0.0, 0.0, 0.0), |(mass, xm, ym), (x, y, pixel)| {
                let value = pixel.0[0];
                (
                    mass + value,
                    xm + (x as f32 + 0.5) * value,
                    ym + (y as f32 + 0.5) * value,
                )
            });
    let centre = MNIST_SIDE as f32 / 2.0;
    let offset = |moment: f32, side: u32| {
        let middle = if mass > 0.0 {
            moment / mass
        } else {
            side as f32 / 2.0
        };
        (centre - middle).round() as i64
    };
    let mut input = Grey::new(MNIST_SIDE, MNIST_SIDE);
    imageops::replace(
        &mut input,
        &glyph,
        offset(x_moment, glyph.width()),
        offset(y_moment, glyph.height()),
    );
    Ok(Prepared {
        input: to_bytes(input.into_raw()),
        warnings,
    })
}

fn to_bytes(values: Vec<f32>) -> Vec<u8> {
    values
        .into_iter()
        .map(|value| (value.clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect()
}

/// The plain preparation: the picture over its backdrop, inverted for `Polarity::DarkInk`,
/// padded to a square with its background (most pictures have margins) and resized.
/// `mnist_like`: the network's input is 28x28 grey, so leaving out `--raw` is worth suggesting.
fn pad_and_resize(
    picture: &Picture,
    shape: Shape,
    polarity: Polarity,
    mnist_like: bool,
) -> Prepared {
    let backdrop = backdrop(picture, polarity);
    let invert = polarity == Polarity::DarkInk;
    let flip = |value: f32| if invert { 1.0 - value } else { value };
    // Non-square inputs take the picture as a square of the larger side, then crop.
    let side = shape.height.max(shape.width) as u32;
    let mut warnings = Vec::new();
    let values = if shape.channels == 3 {
        let rgb = image::Rgb32FImage::from_fn(picture.width(), picture.height(), |x, y| {
            let [r, g, b, a] = picture.get_pixel(x, y).0;
            let over = |colour: f32, behind: f32| flip(colour + (1.0 - a) * behind);
            Rgb([
                over(r, backdrop[0]),
                over(g, backdrop[1]),
                over(b, backdrop[2]),
            ])
        });
        square_and_resize(&rgb, Rgb(backdrop.map(flip)), side).into_raw()
    } else {
        let mut grey = grey_over(picture, backdrop);
        for pixel in grey.pixels_mut() {
            pixel.0[0] = flip(pixel.0[0]);
        }
        let paper = flip(luma(backdrop));
        let contrast = grey
            .pixels()
            .map(|pixel| (pixel.0[0] - paper).abs())
            .fold(0.0, f32::max);
        if contrast < MIN_CONTRAST {
            warnings.push("the picture is blank: nothing on it differs from its background".into());
        } else if paper >= 0.5 {
            warnings.push(if invert {
                "--invert made its dark background light, and the network expects light ink on \
                 a dark background: leave out --invert"
                    .to_string()
            } else {
                format!(
                    "its background is light, and the network expects light ink on a dark \
                     background: try --invert{}",
                    if mnist_like {
                        ", or leave out --raw"
                    } else {
                        ""
                    }
                )
            });
        }
        square_and_resize(&grey, Luma([paper]), side).into_raw()
    };
    let row = side as usize * shape.channels;
    let input = to_bytes(values)
        .chunks_exact(row)
        .take(shape.height)
        .flat_map(|line| line[..shape.width * shape.channels].iter().copied())
        .collect();
    Prepared { input, warnings }
}

/// Pads `picture` to a square with `background` and resizes it to `side x side`.
fn square_and_resize<P>(
    picture: &ImageBuffer<P, Vec<f32>>,
    background: P,
    side_out: u32,
) -> ImageBuffer<P, Vec<f32>>
where
    P: image::Pixel<Subpixel = f32> + 'static,
{
    let (width, height) = picture.dimensions();
    let side = width.max(height);
    let mut square = ImageBuffer::from_pixel(side, side, background);
    imageops::replace(
        &mut square,
        picture,
        i64::from((side - width) / 2),
        i64::from((side - height) / 2),
    );
    imageops::resize(&square, side_out, side_out, FilterType::Triangle)
}

/// The features of a WAV clip for a keyword network whose input is `shape` (frames x features
/// x 1), as a data set stores them: the clip padded with zeros at the end, or cut, to the
/// samples its frames span (as training's one-second clips were), with a warning when it is
/// not one second long.
fn clip_features(
    path: &Path,
    front_end: &tinycnn::audio::FrontEndConfig,
    shape: Shape,
    warnings: &mut Vec<String>,
) -> anyhow::Result<Vec<u8>> {
    use crate::data::audio;
    let samples = audio::read_wav_at(path, front_end.sample_rate_hz)?;
    let rate = front_end.sample_rate_hz as usize;
    if samples.len() != audio::CLIP_SAMPLES {
        warnings.push(format!(
            "{}: {:.3} s of audio, {} one second",
            path.display(),
            samples.len() as f64 / rate as f64,
            if samples.len() < audio::CLIP_SAMPLES {
                "padded with silence to"
            } else {
                "cut to its first"
            }
        ));
    }
    let span = shape.height.saturating_sub(1) * usize::from(front_end.hop_samples)
        + usize::from(front_end.window_samples);
    let clip = audio::fit_clip(&samples, span);
    let mut features = Vec::new();
    audio::Features::new(*front_end)?.clips_into(&clip, span, &mut features)?;
    Ok(features)
}

/// What `host predict` classifies.
#[derive(Clone, Debug)]
pub struct PredictOptions {
    /// The model file.
    pub model: PathBuf,
    /// Pictures to classify.
    pub pictures: Vec<PathBuf>,
    /// How the pictures become inputs.
    pub preparation: Preparation,
    /// Test-set images to classify too.
    pub indices: Vec<usize>,
    /// Where the data set is (for `indices`).
    pub data_dir: PathBuf,
    /// How the data set's pictures of another size are fitted to the model's input (folder
    /// sets).
    pub fit: Fit,
    /// Leave out the data set's damaged pictures instead of failing (folder sets).
    pub skip_damaged: bool,
}

/// What was classified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A picture file.
    Picture(PathBuf),
    /// A test-set image, with its label when the index is in the test set.
    TestImage {
        /// Its index in the test set.
        index: usize,
        /// Its label.
        label: Option<u16>,
    },
}

/// The class of an input.
#[derive(Clone, Debug)]
pub struct Classified {
    /// The predicted class.
    pub class: usize,
    /// Softmax probability of each class.
    pub probabilities: Vec<f32>,
    /// The predicted class's name, when the model names its classes (other than by their
    /// numbers).
    pub name: Option<String>,
}

/// One input's result: its class, or why it could not be classified.
#[derive(Clone, Debug)]
pub struct Prediction {
    /// The input.
    pub source: Source,
    /// The class, or an error message naming the input.
    pub outcome: Result<Classified, String>,
    /// Warnings naming the input.
    pub warnings: Vec<String>,
}

impl Prediction {
    /// The input as the output names it.
    pub fn name(&self) -> String {
        match &self.source {
            Source::Picture(path) => path.display().to_string(),
            Source::TestImage {
                index,
                label: Some(label),
            } => format!("test image {index} (label {label})"),
            Source::TestImage { index, label: None } => format!("test image {index}"),
        }
    }

    /// `NAME: class C, probability P (0: P0, 1: P1, ...)`, or `None` for a failed input.
    pub fn line(&self) -> Option<String> {
        let classified = self.outcome.as_ref().ok()?;
        let listed: Vec<String> = classified
            .probabilities
            .iter()
            .enumerate()
            .map(|(class, p)| format!("{class}: {p:.3}"))
            .collect();
        let named = classified
            .name
            .as_ref()
            .map_or_else(String::new, |name| format!(" ({name})"));
        Some(format!(
            "{}: class {}{named}, probability {:.3} ({})",
            self.name(),
            classified.class,
            classified.probabilities[classified.class],
            listed.join(", ")
        ))
    }

    /// One JSON object: `file` (or `test_image` and `label`), then `class`, `probability` and
    /// `probabilities`, or `error`; and `warnings`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut object = serde_json::Map::new();
        match &self.source {
            Source::Picture(path) => {
                object.insert("file".into(), path.display().to_string().into());
            }
            Source::TestImage { index, label } => {
                object.insert("test_image".into(), (*index).into());
                if let Some(label) = label {
                    object.insert("label".into(), (*label).into());
                }
            }
        }
        match &self.outcome {
            Ok(classified) => {
                object.insert("class".into(), classified.class.into());
                if let Some(name) = &classified.name {
                    object.insert("class_name".into(), name.clone().into());
                }
                let probabilities: Vec<f64> = classified
                    .probabilities
                    .iter()
                    .map(|&p| rounded(p))
                    .collect();
                object.insert("probability".into(), probabilities[classified.class].into());
                object.insert("probabilities".into(), probabilities.into());
            }
            Err(error) => {
                object.insert("error".into(), error.clone().into());
            }
        }
        object.insert("warnings".into(), self.warnings.clone().into());
        object.into()
    }
}

/// `p` to 6 decimals: what an f32 softmax holds, without the f64 digits a conversion would add.
fn rounded(p: f32) -> f64 {
    (f64::from(p) * 1e6).round() / 1e6
}

/// `host predict`: every picture and test image, in order, each with its class or its error.
/// Only what stops them all (no input, an unreadable model or data set) is an error here.
pub fn run(options: &PredictOptions) -> anyhow::Result<Vec<Prediction>> {
    if options.pictures.is_empty() && options.indices.is_empty() {
        bail!("nothing to classify: give picture files and/or --index N");
    }
    let bytes = super::read_model(&options.model)?;
    let model = Model::from_bytes(&bytes)?;
    anyhow::ensure!(
        model.architecture().is_classifier(),
        "{}: the model's output is {} values, not class scores (output:values): predict \
         names classes",
        options.model.display(),
        model.architecture().output().values()
    );
    let shape = model.architecture().input();
    // A keyword network's inputs are its front end's features, stored as a data set stores
    // them; `classify_int8` and `classify_f32` read them so.
    let classify = |input: &[u8]| -> anyhow::Result<Classified> {
        let mut probabilities = vec![0f32; model.architecture().classes()];
        let fast = super::eval::Kernels::Fast;
        let class = match &model {
            Model::Int8(m) => {
                let mut scratch = vec![0i8; m.scratch_bytes_with_kernels()];
                let mut kernels = super::kernels::FastInt8::for_model(m.record_bytes());
                let p = super::eval::classify_int8(m, fast, &mut kernels, input, &mut scratch)?;
                m.probabilities(p.logits, &mut probabilities);
                p.class
            }
            Model::F32(m) => {
                let mut scratch = vec![0f32; m.scratch_len()];
                let mut kernels = super::kernels::FastF32::for_model(m.record_bytes());
                let p = super::eval::classify_f32(m, fast, &mut kernels, input, &mut scratch)?;
                m.probabilities(p.logits, &mut probabilities);
                p.class
            }
        };
        Ok(Classified {
            class,
            probabilities,
            name: model
                .class_names()
                .get(class)
                .filter(|name| !crate::data::set::is_number_name(class, name))
                .map(str::to_string),
        })
    };
    let mut predictions = Vec::new();
    for path in &options.pictures {
        let name = path.display().to_string();
        let mut warnings = Vec::new();
        if let Some(front_end) = model.front_end() {
            // The WAV reader's errors name the file already.
            let outcome = clip_features(path, &front_end, shape, &mut warnings)
                .and_then(|features| classify(&features).with_context(|| name.clone()))
                .map_err(|error| format!("{error:#}"));
            predictions.push(Prediction {
                source: Source::Picture(path.clone()),
                outcome,
                warnings,
            });
            continue;
        }
        let outcome = decode(path)
            .and_then(|picture| {
                let prepared =
                    prepare(&picture, shape, options.preparation).with_context(|| name.clone())?;
                warnings = prepared
                    .warnings
                    .iter()
                    .map(|warning| format!("{name}: {warning}"))
                    .collect();
                classify(&prepared.input).with_context(|| name.clone())
            })
            .map_err(|error| format!("{error:#}"));
        predictions.push(Prediction {
            source: Source::Picture(path.clone()),
            outcome,
            warnings,
        });
    }
    if !options.indices.is_empty() {
        let folder_options = FolderOptions::for_input(
            model.architecture().input(),
            options.fit,
            options.skip_damaged,
        )
        .with_front_end(model.front_end());
        let data = DataSet::load(&options.data_dir, &folder_options)?;
        super::eval::check_data_fits(model.architecture(), &data)?;
        for &index in &options.indices {
            let label = data.test.labels.get(index).copied();
            let outcome = match data.test.image(index) {
                Some(pixels) => classify(pixels).map_err(|error| format!("{error:#}")),
                None => Err(format!(
                    "test image {index}: past the last test image ({})",
                    data.test.len().saturating_sub(1)
                )),
            };
            predictions.push(Prediction {
                source: Source::TestImage { index, label },
                outcome,
                warnings: Vec::new(),
            });
        }
    }
    Ok(predictions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, LumaA, Rgba};

    const MNIST: Shape = Shape::new(28, 28, 1);

    fn grey(width: u32, height: u32, level: impl Fn(u32, u32) -> u8) -> Picture {
        reduce(&DynamicImage::ImageLuma8(GrayImage::from_fn(
            width,
            height,
            |x, y| Luma([level(x, y)]),
        )))
    }

    fn with(polarity: Polarity, raw: bool) -> Preparation {
        Preparation { polarity, raw }
    }

    fn as_mnist(picture: &Picture) -> Prepared {
        prepare(picture, MNIST, Preparation::default()).unwrap()
    }

    /// An asymmetric shape (an L: a bar and a foot), `scale` pixels a unit, 3 x 6 units.
    fn ell(x: u32, y: u32, scale: u32) -> bool {
        let (x, y) = (x / scale, y / scale);
        x < 3 && y < 6 && (x == 0 || y == 5)
    }

    fn centre_of_mass(input: &[u8]) -> (f32, f32) {
        let (mut mass, mut x_moment, mut y_moment) = (0.0, 0.0, 0.0);
        for (i, &value) in input.iter().enumerate() {
            let value = f32::from(value);
            mass += value;
            x_moment += (i % 28) as f32 * value + 0.5 * value;
            y_moment += (i / 28) as f32 * value + 0.5 * value;
        }
        (x_moment / mass, y_moment / mass)
    }

    #[test]
    fn the_border_decides_the_polarity_even_of_a_bold_digit() {
        // A bold 0 covering most of the picture: darker on average than the middle grey.
        let ring = |x: u32, y: u32| {
            let distance = (x as f32 - 30.0).hypot(y as f32 - 30.0);
            (8.0..27.0).contains(&distance)
        };
        let dark_on_light = grey(60, 60, |x, y| if ring(x, y) { 0 } else { 255 });
        let mean = dark_on_light.pixels().map(|p| p.0[0]).sum::<f32>() / 3600.0;
        assert!(mean < 0.5, "{mean}");
        let prepared = as_mnist(&dark_on_light);
        assert!(prepared.warnings.is_empty(), "{:?}", prepared.warnings);
        assert_eq!(prepared.input[0], 0, "the paper becomes MNIST's black");
        assert_eq!(prepared.input[14 * 28 + 14], 0, "the 0's hole too");
        assert_eq!(prepared.input.iter().max(), Some(&255));
        let light_on_dark = grey(60, 60, |x, y| if ring(x, y) { 255 } else { 0 });
        assert_eq!(as_mnist(&light_on_dark), prepared);
        // The flags agreeing with the border change nothing.
        for (picture, polarity) in [
            (&dark_on_light, Polarity::DarkInk),
            (&light_on_dark, Polarity::LightInk),
        ] {
            assert_eq!(
                prepare(picture, MNIST, with(polarity, false)).unwrap(),
                prepared
            );
        }
    }

    #[test]
    fn a_flag_against_the_border_says_what_the_flag_did() {
        let light_on_dark = grey(40, 60, |x, y| if ell(x, y, 6) { 255 } else { 0 });
        let forced = prepare(&light_on_dark, MNIST, with(Polarity::DarkInk, false)).unwrap();
        assert_eq!(
            forced.warnings,
            ["its border is dark, yet --invert takes it as dark ink on light paper"]
        );
        let raw = prepare(&light_on_dark, MNIST, with(Polarity::DarkInk, true)).unwrap();
        assert_eq!(
            raw.warnings,
            [
                "--invert made its dark background light, and the network expects light ink on a \
                 dark background: leave out --invert"
            ]
        );
        let dark_on_light = grey(40, 60, |x, y| if ell(x, y, 6) { 0 } else { 255 });
        let raw = prepare(&dark_on_light, MNIST, with(Polarity::Auto, true)).unwrap();
        assert_eq!(
            raw.warnings,
            [
                "its background is light, and the network expects light ink on a dark \
                 background: try --invert, or leave out --raw"
            ]
        );
        let forced = prepare(&dark_on_light, MNIST, with(Polarity::LightInk, false)).unwrap();
        assert_eq!(
            forced.warnings,
            ["its border is light, yet --no-invert takes it as light ink on dark paper"]
        );
    }

    #[test]
    fn off_centre_ink_is_scaled_to_20_pixels_and_centred_by_mass() {
        let top_left = grey(200, 120, |x, y| if ell(x, y, 10) { 255 } else { 0 });
        let bottom_right = grey(90, 300, |x, y| {
            if x >= 50 && y >= 200 && ell(x - 50, y - 200, 10) {
                255
            } else {
                0
            }
        });
        let prepared = as_mnist(&top_left);
        assert_eq!(as_mnist(&bottom_right), prepared);
        let (x, y) = centre_of_mass(&prepared.input);
        assert!(
            (x - 14.0).abs() <= 0.5 && (y - 14.0).abs() <= 0.5,
            "{x}, {y}"
        );
        let rows = (0..28)
            .filter(|row| {
                prepared.input[row * 28..row * 28 + 28]
                    .iter()
                    .any(|&v| v > 0)
            })
            .count();
        let columns = (0..28)
            .filter(|column| (0..28).any(|row| prepared.input[row * 28 + column] > 0))
            .count();
        assert_eq!(
            (columns, rows),
            (10, 20),
            "a 30x60 shape fits 20x20 as 10x20"
        );
    }

    #[test]
    fn transparent_pixels_take_the_background_the_ink_implies() {
        let coverage = |x: u32, y: u32| if ell(x, y, 8) { 255 } else { 0 };
        let opaque = as_mnist(&grey(30, 50, coverage));
        // Transparent pixels store the ink's colour, as most editors write them.
        for ink in [255, 0] {
            let picture = reduce(&DynamicImage::ImageLumaA8(ImageBuffer::from_fn(
                30,
                50,
                |x, y| LumaA([ink, coverage(x, y)]),
            )));
            assert_eq!(as_mnist(&picture), opaque, "ink {ink}");
        }
        // White ink, transparent pixels stored black.
        let picture = reduce(&DynamicImage::ImageRgba8(ImageBuffer::from_fn(
            30,
            50,
            |x, y| {
                let a = coverage(x, y);
                Rgba([a, a, a, a])
            },
        )));
        assert_eq!(as_mnist(&picture), opaque);
        // A transparent margin around an opaque white page: the page is the background.
        let page = reduce(&DynamicImage::ImageLumaA8(ImageBuffer::from_fn(
            50,
            70,
            |x, y| {
                let on_page = (10..40).contains(&x) && (10..60).contains(&y);
                let ink = on_page && coverage(x - 10, y - 10) > 0;
                LumaA([if ink { 0 } else { 255 }, if x < 3 { 0 } else { 255 }])
            },
        )));
        assert_eq!(as_mnist(&page).input, opaque.input);
    }

    #[test]
    fn a_blank_picture_is_an_error_or_with_raw_a_warning() {
        let noise = grey(80, 60, |x, y| 200 + ((x * 7 + y * 13) % 20) as u8);
        let error = prepare(&noise, MNIST, Preparation::default()).unwrap_err();
        assert!(error.to_string().contains("blank"), "{error}");
        let raw = prepare(&noise, MNIST, with(Polarity::Auto, true)).unwrap();
        assert_eq!(
            raw.warnings,
            ["the picture is blank: nothing on it differs from its background"]
        );
        let transparent = reduce(&DynamicImage::ImageRgba8(ImageBuffer::from_pixel(
            10,
            10,
            Rgba([0u8, 0, 0, 0]),
        )));
        assert!(prepare(&transparent, MNIST, Preparation::default()).is_err());
    }

    #[test]
    fn raw_keeps_pictures_in_mnist_form() {
        let digit = GrayImage::from_fn(28, 28, |x, y| {
            let ink = x >= 8 && y >= 2 && ell(x - 8, y - 2, 4);
            Luma([if ink { 250 } else { 0 }])
        });
        let picture = reduce(&DynamicImage::ImageLuma8(digit.clone()));
        let raw = prepare(&picture, MNIST, with(Polarity::Auto, true)).unwrap();
        assert_eq!(raw.input, digit.clone().into_raw());
        assert!(raw.warnings.is_empty());
        let mut inverted = digit.clone();
        imageops::invert(&mut inverted);
        let inverted = reduce(&DynamicImage::ImageLuma8(inverted));
        let raw = prepare(&inverted, MNIST, with(Polarity::DarkInk, true)).unwrap();
        assert_eq!(raw.input, digit.into_raw());
        assert!(raw.warnings.is_empty(), "{:?}", raw.warnings);
    }

    #[test]
    fn sixteen_bit_pictures_decode_as_eight_bit_ones() {
        let dir = tempfile::tempdir().unwrap();
        let wide = ImageBuffer::from_fn(40, 20, |x, y| {
            Luma([if ell(x, y, 3) { 65535u16 } else { 0 }])
        });
        let path = dir.path().join("sixteen.png");
        DynamicImage::ImageLuma16(wide.clone()).save(&path).unwrap();
        let eight = grey(40, 20, |x, y| if ell(x, y, 3) { 255 } else { 0 });
        assert_eq!(decode(&path).unwrap(), eight);
        // Other formats (here PGM) reduce in the decoder's own type.
        let pgm = dir.path().join("sixteen.pgm");
        DynamicImage::ImageLuma16(wide).save(&pgm).unwrap();
        assert_eq!(decode(&pgm).unwrap(), eight);
    }

    #[test]
    fn colour_networks_get_rgb_and_other_sizes() {
        let red = reduce(&DynamicImage::ImageRgba8(ImageBuffer::from_pixel(
            20,
            10,
            Rgba([200u8, 10, 20, 255]),
        )));
        let prepared = prepare(&red, Shape::new(12, 12, 3), Preparation::default()).unwrap();
        assert_eq!(prepared.input.len(), 12 * 12 * 3);
        // Padded with the background, channels-last.
        assert!(
            prepared
                .input
                .chunks_exact(3)
                .all(|pixel| pixel == [200, 10, 20])
        );
        let grey_input = prepare(&red, Shape::new(8, 16, 1), Preparation::default()).unwrap();
        assert_eq!(grey_input.input.len(), 8 * 16);
    }

    #[test]
    fn large_pictures_are_reduced_while_decoded() {
        let mut shrink = Shrink::new(16_000, 4_000);
        assert_eq!((shrink.out_width, shrink.out_height), (1024, 256));
        for y in 0..4_000 {
            shrink.push_row(
                y,
                (0..16_000).map(|x| if x < 8_000 { [255; 4] } else { [0; 4] }),
            );
        }
        let picture = shrink.finish().unwrap();
        assert_eq!(picture.get_pixel(0, 0).0, [1.0; 4]);
        assert_eq!(picture.get_pixel(1023, 255).0, [0.0; 4]);
    }

    #[test]
    fn bad_files_give_one_line_errors_with_sizes_and_limits() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            path
        };
        let message = |path: &Path| format!("{:#}", decode(path).unwrap_err());
        assert!(message(&write("empty.png", b"")).contains("empty.png: the file is empty"));
        assert!(
            message(&write("notes.png", b"this is not a picture at all"))
                .contains("notes.png: not a PNG, JPEG, BMP, GIF, TIFF, WebP or PGM/PPM picture")
        );
        let good = dir.path().join("good.png");
        DynamicImage::ImageLuma8(GrayImage::new(8, 8))
            .save(&good)
            .unwrap();
        let mut bytes = std::fs::read(&good).unwrap();
        bytes.truncate(bytes.len() / 2);
        assert!(message(&write("truncated.png", &bytes)).contains("truncated.png: cannot decode"));
        assert!(message(&dir.path().join("missing.png")).contains("missing.png: cannot open"));
        assert!(decode(&good).is_ok());

        let none = message(&write("none.pgm", b"P5\n0 5\n255\n"));
        assert!(none.starts_with(&format!("{}: ", dir.path().join("none.pgm").display())));
        // Headers claiming huge pictures are refused before anything is allocated.
        let huge = |header: &str| [header.as_bytes(), &[0; 64]].concat();
        assert_eq!(
            message(&write("wide.pgm", &huge("P5\n100000 10\n255\n"))),
            format!(
                "{}: a 100000 x 10 picture is larger than the limit of 16384 pixels a side",
                dir.path().join("wide.pgm").display()
            )
        );
        assert!(
            message(&write("big.ppm", &huge("P6\n16000 16000\n255\n"))).contains(
                "big.ppm: a 16000 x 16000 picture takes 733 MiB decoded, more than the 192 MiB \
                 limit for JPEG, PGM/PPM and interlaced PNG"
            )
        );
        let tall = dir.path().join("tall.png");
        let mut encoder = png::Encoder::new(
            std::io::BufWriter::new(File::create(&tall).unwrap()),
            1,
            20_000,
        );
        encoder.set_depth(png::BitDepth::One);
        encoder.set_color(png::ColorType::Grayscale);
        let mut writer = encoder.write_header().unwrap();
        writer.write_image_data(&[0; 2 * 20_000][..20_000]).unwrap();
        writer.finish().unwrap();
        assert!(
            message(&tall).contains("tall.png: a 1 x 20000 picture is larger than the limit"),
            "{}",
            message(&tall)
        );
    }
}
