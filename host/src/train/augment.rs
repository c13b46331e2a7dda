//! On-the-fly data augmentation: each training picture is moved, turned, scaled and mirrored a
//! little, differently every time it is seen, so the network learns the digit rather than where
//! and how upright it was drawn.
//!
//! The settings are an [`Augment`], written on the command line as `shift=2,rotate=10,zoom=0.1,flip`
//! (any subset, any order; the empty string or `none` for no augmentation) and recorded in the
//! checkpoint and `metrics.json` in that same text form. [`augment_into`] takes one picture as the
//! data set holds it (channels last, bytes) and appends it augmented and normalised, exactly as
//! [`model::normalise`] lays pictures out (channels first, `value / 255`), to the batch being built.
//!
//! # What a picture goes through
//!
//! Modelled on Keras's `RandomTranslation`, `RandomRotation`, `RandomZoom` and `RandomFlip` layers,
//! each picture gets its own random draw of every transform (see [`Params::draw`]):
//!
//! * **shift**: a whole number of pixels, uniform in `[-shift, shift]`, independently along each
//!   axis. Whole pixels (Keras draws real-valued offsets) because the setting is in pixels and a
//!   picture that is only shifted then stays sharp: no interpolation blur.
//! * **rotate**: an angle uniform in `[-rotate, rotate]` degrees; a positive angle turns the picture
//!   counter-clockwise as seen on screen, as in Keras.
//! * **zoom**: a magnification uniform in `[1 - zoom, 1 + zoom]`; above 1 the content grows (zooms
//!   in). Keras's `RandomZoom` draws its factor the other way round (a positive factor zooms out),
//!   which for a symmetric range only changes the distribution slightly.
//! * **flip**: mirrored left to right with probability 1/2.
//!
//! The four are combined into one affine map about the picture's centre (midway between the
//! centres of its first and last pixels, `((width - 1) / 2, (height - 1) / 2)`, as Keras takes it,
//! so that a quarter turn of a square picture maps pixels exactly onto pixels): the picture is mirrored, then scaled, then
//! rotated, then shifted, so the shift is in output pixels whatever the rotation. Each output pixel
//! is read from the input through the inverse map with bilinear interpolation; where that falls
//! outside the picture the value is 0 (Keras's `fill_mode="constant"` with `fill_value=0`, not its
//! default `"reflect"`: MNIST's background is 0, and reflecting would mirror strokes that touch the
//! border into the picture).
//!
//! # Random numbers and resumption
//!
//! The caller seeds the generator (a `ChaCha8Rng` per seed, epoch and batch, say) so that a resumed
//! run replays the draws of an uninterrupted one. For that the number of values taken from the
//! generator must not depend on the drawn values or on which transforms are on: every augmented
//! picture takes exactly [`WORDS_PER_PICTURE`] 64-bit words, in a fixed order, even for transforms
//! that are off, and maps them to values itself (rand's `random_range` may reject and redraw, so
//! its use is variable). With no augmentation at all ([`Augment::is_none`]) nothing is drawn and
//! the output is [`model::normalise`]'s, bit for bit: a run without augmentation is unchanged.
//!
//! Nothing here has state besides the generator passed in, so pictures can be augmented in
//! parallel (each with its own generator).

use std::fmt;
use std::str::FromStr;

use rand::Rng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tinycnn::arch::Shape;

use crate::train::model;

/// Largest `shift` accepted, in pixels.
pub const MAX_SHIFT: u32 = 64;
/// Largest `rotate` accepted, in degrees: a half turn either way covers every orientation.
pub const MAX_ROTATE: f32 = 180.0;
/// 64-bit words taken from the generator per augmented picture (none when nothing is augmented):
/// horizontal shift, vertical shift, angle, magnification, flip, in that order.
pub const WORDS_PER_PICTURE: usize = 5;

/// The valid words, for error messages.
const VALID_WORDS: &str = "valid words: shift=PIXELS (whole number, 0 to 64), \
     rotate=DEGREES (0 to 180), zoom=FRACTION (0 up to but not including 1), flip; \
     separated by commas, each at most once, or `none` alone";

/// How much to augment training pictures; [`Augment::default()`] is none.
///
/// Written and parsed as text: `shift=2,rotate=10,zoom=0.1,flip` (see [`FromStr`] and
/// [`fmt::Display`]); serialised (checkpoint, metrics) as that text too.
///
/// Values outside the ranges [`FromStr`] accepts (negative, not finite, zoom of 1 or more) are not
/// meaningful; build one by parsing to have them checked.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Augment {
    /// Largest translation along each axis, in whole pixels (0 to [`MAX_SHIFT`]).
    pub shift: u32,
    /// Largest rotation either way, in degrees (0 to [`MAX_ROTATE`]).
    pub rotate: f32,
    /// Largest change of scale, as a fraction: 0.1 scales by a factor in `[0.9, 1.1]` (0 up to,
    /// not including, 1).
    pub zoom: f32,
    /// Mirror left to right half of the time. Only for data where a mirrored picture is still of
    /// the same class (not digits: a mirrored 2 is no 2).
    pub flip: bool,
}

impl Augment {
    /// Whether no transform is on: pictures pass through unchanged and no random numbers are drawn.
    pub fn is_none(&self) -> bool {
        self.shift == 0 && self.rotate == 0.0 && self.zoom == 0.0 && !self.flip
    }
}

impl fmt::Display for Augment {
    /// The canonical text: the transforms that are on, in the order shift, rotate, zoom, flip, or
    /// `none`. Parses back to the same value (floats print in their shortest exact form).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_none() {
            return f.write_str("none");
        }
        let mut words = Vec::with_capacity(4);
        if self.shift != 0 {
            words.push(format!("shift={}", self.shift));
        }
        if self.rotate != 0.0 {
            words.push(format!("rotate={}", self.rotate));
        }
        if self.zoom != 0.0 {
            words.push(format!("zoom={}", self.zoom));
        }
        if self.flip {
            words.push("flip".to_owned());
        }
        f.write_str(&words.join(","))
    }
}

/// Why a text is not an [`Augment`]; every message names the offending word.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseAugmentError {
    /// A word that is none of shift, rotate, zoom, flip.
    #[error("unknown augmentation `{word}`; {VALID_WORDS}")]
    Unknown {
        /// The word as written.
        word: String,
    },
    /// Nothing between two commas, or a comma at either end.
    #[error("empty augmentation word in `{text}`; {VALID_WORDS}")]
    Empty {
        /// The whole text.
        text: String,
    },
    /// The same transform named twice.
    #[error("augmentation `{word}` is given more than once")]
    Duplicate {
        /// The transform's name.
        word: String,
    },
    /// `shift`, `rotate` or `zoom` without `=value`.
    #[error("augmentation `{word}` needs a value, as in `{word}={example}`")]
    MissingValue {
        /// The transform's name.
        word: String,
        /// A valid value, for the message.
        example: &'static str,
    },
    /// `flip=...`: flip is on or off, by being named or not.
    #[error("augmentation `flip` takes no value (got `flip={value}`); name it to mirror pictures")]
    UnexpectedValue {
        /// The value given.
        value: String,
    },
    /// A value that does not parse or is out of range.
    #[error("augmentation `{word}={value}`: {expected}")]
    BadValue {
        /// The transform's name.
        word: String,
        /// The value as written.
        value: String,
        /// What the value must be.
        expected: &'static str,
    },
}

impl FromStr for Augment {
    type Err = ParseAugmentError;

    /// Parses `shift=N,rotate=DEGREES,zoom=FRACTION,flip`: any subset, any order, each at most
    /// once, spaces around words and `=` ignored. The empty string and `none` are no augmentation.
    /// A value of 0 leaves its transform off (`shift=0` is the same as leaving `shift` out).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        if trimmed.is_empty() || trimmed == "none" {
            return Ok(Augment::default());
        }
        let mut augment = Augment::default();
        // Which of shift, rotate, zoom, flip has been seen, to refuse duplicates (a duplicate is
        // most likely a typo, and silently keeping either value would hide it).
        let mut seen = [false; 4];
        for word in trimmed.split(',') {
            let word = word.trim();
            if word.is_empty() {
                return Err(ParseAugmentError::Empty {
                    text: text.to_owned(),
                });
            }
            let (name, value) = match word.split_once('=') {
                Some((name, value)) => (name.trim(), Some(value.trim())),
                None => (word, None),
            };
            let slot = match name {
                "shift" => 0,
                "rotate" => 1,
                "zoom" => 2,
                "flip" => 3,
                _ => {
                    return Err(ParseAugmentError::Unknown {
                        word: word.to_owned(),
                    });
                }
            };
            if std::mem::replace(&mut seen[slot], true) {
                return Err(ParseAugmentError::Duplicate {
                    word: name.to_owned(),
                });
            }
            if name == "flip" {
                if let Some(value) = value {
                    return Err(ParseAugmentError::UnexpectedValue {
                        value: value.to_owned(),
                    });
                }
                augment.flip = true;
                continue;
            }
            let example = ["2", "10", "0.1"][slot];
            let value = value.ok_or_else(|| ParseAugmentError::MissingValue {
                word: name.to_owned(),
                example,
            })?;
            let bad = |expected| ParseAugmentError::BadValue {
                word: name.to_owned(),
                value: value.to_owned(),
                expected,
            };
            match slot {
                0 => {
                    const EXPECTED: &str = "the shift must be a whole number of pixels, 0 to 64";
                    augment.shift = value.parse().map_err(|_| bad(EXPECTED))?;
                    if augment.shift > MAX_SHIFT {
                        return Err(bad(EXPECTED));
                    }
                }
                1 => {
                    const EXPECTED: &str = "the rotation must be a number of degrees, 0 to 180";
                    let degrees: f32 = value.parse().map_err(|_| bad(EXPECTED))?;
                    // `contains` is false for NaN; infinities are out of range.
                    if !(0.0..=MAX_ROTATE).contains(&degrees) {
                        return Err(bad(EXPECTED));
                    }
                    // `+ 0.0` turns -0 into 0, so that Display never prints `-0`.
                    augment.rotate = degrees + 0.0;
                }
                _ => {
                    const EXPECTED: &str = "the zoom must be a fraction from 0 up to, not including, 1 (0.1 scales by 0.9 to 1.1)";
                    let fraction: f32 = value.parse().map_err(|_| bad(EXPECTED))?;
                    if !(0.0..1.0).contains(&fraction) {
                        return Err(bad(EXPECTED));
                    }
                    augment.zoom = fraction + 0.0;
                }
            }
        }
        Ok(augment)
    }
}

impl Serialize for Augment {
    /// As its text form, so a checkpoint or `metrics.json` reads like the command line.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Augment {
    /// From its text form, checked as the command line is.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One picture's drawn transform: what [`transform`] applies.
///
/// Applied about the picture's centre in the order flip, scale, rotate, shift (see the module's
/// documentation).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Params {
    /// Horizontal shift in pixels, positive to the right. Whole when drawn by [`Params::draw`].
    pub dx: f32,
    /// Vertical shift in pixels, positive downwards. Whole when drawn by [`Params::draw`].
    pub dy: f32,
    /// Rotation in degrees, positive counter-clockwise as seen on screen.
    pub angle: f32,
    /// Magnification: above 1 the content grows.
    pub scale: f32,
    /// Mirror left to right.
    pub flip: bool,
}

impl Params {
    /// The transform that changes nothing.
    pub const IDENTITY: Params = Params {
        dx: 0.0,
        dy: 0.0,
        angle: 0.0,
        scale: 1.0,
        flip: false,
    };

    /// Draws one picture's transform for `augment`: always exactly [`WORDS_PER_PICTURE`] words
    /// from `rng` (horizontal shift, vertical shift, angle, magnification, flip, in that order),
    /// whichever transforms are on, so that the stream stays aligned. A transform that is off
    /// gets its neutral value exactly (shift 0, angle 0, scale 1, no flip).
    pub fn draw(augment: &Augment, rng: &mut impl Rng) -> Params {
        // Separate statements: the order of the draws is part of the resumable stream.
        let word_dx = rng.next_u64();
        let word_dy = rng.next_u64();
        let word_angle = rng.next_u64();
        let word_scale = rng.next_u64();
        let word_flip = rng.next_u64();
        let shift = augment.shift.min(MAX_SHIFT);
        Params {
            dx: whole_in(word_dx, shift) as f32,
            dy: whole_in(word_dy, shift) as f32,
            angle: (f64::from(augment.rotate) * symmetric_unit(word_angle)) as f32,
            scale: (1.0 + f64::from(augment.zoom) * symmetric_unit(word_scale)) as f32,
            // The top bit: 1/2 exactly.
            flip: augment.flip && word_flip >> 63 == 1,
        }
    }
}

/// A whole number uniform in `[-limit, limit]` from one 64-bit word, by multiply-and-shift
/// (Lemire's method without the rejection step: the bias, at most `(2 limit + 1) / 2^64`, is far
/// below anything measurable, and no rejection keeps the number of draws fixed).
fn whole_in(word: u64, limit: u32) -> i64 {
    let count = 2 * u128::from(limit) + 1;
    ((u128::from(word) * count) >> 64) as i64 - i64::from(limit)
}

/// A real number uniform in `[-1, 1)` from one 64-bit word (its top 53 bits, as many as an f64
/// holds).
fn symmetric_unit(word: u64) -> f64 {
    let unit = (word >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
    2.0 * unit - 1.0
}

/// Appends `image` (`shape`, channels last, 0-255) augmented with one fresh random draw of
/// `augment` to `out`, normalised to 0-1 and channels first exactly as [`model::normalise`] gives
/// it.
///
/// Takes [`WORDS_PER_PICTURE`] words from `rng`, or none when [`Augment::is_none`] (then the
/// values are [`model::normalise`]'s, bit for bit). The result depends on the arguments alone.
///
/// # Panics
///
/// If `image` does not hold `shape.values()` values.
pub fn augment_into(
    image: &[u8],
    shape: Shape,
    augment: &Augment,
    rng: &mut impl Rng,
    out: &mut Vec<f32>,
) {
    if augment.is_none() {
        assert_eq!(image.len(), shape.values(), "picture of shape {shape}");
        out.extend(model::normalise(image, shape));
        return;
    }
    let params = Params::draw(augment, rng);
    transform(image, shape, &params, out);
}

/// Fractional bits of the fixed-point source positions: stepping from one output pixel to the
/// next adds a constant exactly, with no drift, and the whole and fractional parts come out with
/// a shift and a mask (with f32 positions, Rust's saturating float-to-integer conversions made
/// this loop about twice as slow).
const POSITION_BITS: u32 = 32;
/// Fractional bits of the interpolation weights (the top bits of a position's fraction): a
/// weight is a multiple of 1/65536, so a value is within 0.00003 of exact bilinear interpolation
/// (a hundredth of one step of the 0-255 input).
const WEIGHT_BITS: u32 = 16;
/// The weight 1 in fixed point.
const WEIGHT_ONE: i64 = 1 << WEIGHT_BITS;
/// The smallest magnification used; smaller ones are taken as this. Keeps the fixed-point
/// positions far from overflow for pictures up to 32768 pixels a side; a picture shrunk this far
/// is under a pixel wide anyway.
const MIN_SCALE: f64 = 1.0 / 1024.0;

/// The inverse of a picture's transform in fixed point ([`POSITION_BITS`] fractional bits):
/// output pixel `(x, y)` is read from input position `(xx x + xy y + x0, yx x + yy y + y0)`.
#[derive(Clone, Copy, Debug)]
struct Inverse {
    xx: i64,
    xy: i64,
    x0: i64,
    yx: i64,
    yy: i64,
    y0: i64,
}

impl Inverse {
    fn new(params: &Params, shape: Shape) -> Inverse {
        // In f64, rounded once to fixed point: whole shifts and the mirror (coefficients 0 and
        // ±1, centres on whole or half pixels) come out exact, so such outputs land on the pixel
        // grid and equal the input's bytes / 255 bit for bit. So does a quarter turn (its cosine
        // of 6e-17 rounds to 0).
        let cx = (shape.width as f64 - 1.0) / 2.0;
        let cy = (shape.height as f64 - 1.0) / 2.0;
        let (sin, cos) = f64::from(params.angle).to_radians().sin_cos();
        // `max` also turns NaN into MIN_SCALE.
        let scale = f64::from(params.scale).max(MIN_SCALE);
        let mirror = if params.flip { -1.0 } else { 1.0 };
        // The forward map of a position relative to the centre, (u, v) with v downwards, is
        // `shift + rotate(scale * (mirror * u, v))`, where a counter-clockwise turn on screen
        // (y down) is `(cos u + sin v, -sin u + cos v)`. Undone in reverse order, with
        // (du, dv) = (x - cx - dx, y - cy - dy):
        //   u = mirror * (cos du - sin dv) / scale,  v = (sin du + cos dv) / scale.
        let xx = mirror * cos / scale;
        let xy = -mirror * sin / scale;
        let yx = sin / scale;
        let yy = cos / scale;
        let ox = cx + f64::from(params.dx);
        let oy = cy + f64::from(params.dy);
        // `as` saturates (and takes NaN, from a non-finite angle or shift, to 0): whatever the
        // parameters, the arithmetic below cannot fail, only give a meaningless picture.
        let fixed = |value: f64| (value * (1u64 << POSITION_BITS) as f64).round() as i64;
        Inverse {
            xx: fixed(xx),
            xy: fixed(xy),
            x0: fixed(cx - xx * ox - xy * oy),
            yx: fixed(yx),
            yy: fixed(yy),
            y0: fixed(cy - yx * ox - yy * oy),
        }
    }
}

/// Appends `image` (`shape`, channels last, 0-255) transformed by `params` to `out`, normalised to
/// 0-1 and channels first as [`model::normalise`] lays it out: every output pixel is read through
/// the inverse map, bilinearly, 0 outside the picture. [`augment_into`] calls this with a random
/// draw; it is public for previews and tests that want a chosen transform.
///
/// With whole shifts, no rotation or a quarter turn, a scale of 1, with or without the mirror,
/// every output value is exactly an input byte / 255 (or 0), as `normalise` computes it. Other
/// transforms are within 0.00003 of exact bilinear interpolation.
///
/// `params.scale` should be positive; below 1/1024 it is taken as 1/1024.
///
/// # Panics
///
/// If `image` does not hold `shape.values()` values.
pub fn transform(image: &[u8], shape: Shape, params: &Params, out: &mut Vec<f32>) {
    assert_eq!(image.len(), shape.values(), "picture of shape {shape}");
    let (height, width) = (shape.height, shape.width);
    if shape.values() == 0 {
        return;
    }
    let start = out.len();
    // Zeros first: output pixels read from outside the picture are simply skipped.
    out.resize(start + shape.values(), 0.0);
    let dst = &mut out[start..];
    let map = Inverse::new(params, shape);
    // The loop specialised for the usual channel counts: with a constant count it keeps its
    // state in registers, about twice as fast as with a variable one.
    match shape.channels {
        1 => sample(image, height, width, 1, &map, dst),
        3 => sample(image, height, width, 3, &map, dst),
        channels => sample(image, height, width, channels, &map, dst),
    }
}

/// [`transform`]'s loop over the output pixels (`dst`, channels first, zeros).
#[inline(always)]
fn sample(
    image: &[u8],
    height: usize,
    width: usize,
    channels: usize,
    map: &Inverse,
    dst: &mut [f32],
) {
    // The weighted sums are bytes times two weights: `value * 2^32`. Dividing by
    // `255 * 2^32` (exact in f32) rounds as `normalise`'s `byte / 255` does for a whole byte.
    const DIVISOR: f32 = 255.0 * (1u64 << (2 * WEIGHT_BITS)) as f32;
    let plane = height * width;
    let (w, h) = (width as i64, height as i64);
    let row_step = width * channels;
    for y in 0..height {
        // Wrapping: positions only overflow for degenerate maps (see MIN_SCALE), and then give
        // a meaningless picture rather than a panic.
        let mut sx = map.x0.wrapping_add(map.xy.wrapping_mul(y as i64));
        let mut sy = map.y0.wrapping_add(map.yy.wrapping_mul(y as i64));
        for x in 0..width {
            let (px, py) = (sx, sy);
            sx = sx.wrapping_add(map.xx);
            sy = sy.wrapping_add(map.yx);
            // Arithmetic shifts: the floor, also below 0.
            let left = px >> POSITION_BITS;
            let top = py >> POSITION_BITS;
            // The four neighbours are (left, top) to (left + 1, top + 1); all off the picture:
            // the value stays 0.
            if !(left >= -1 && left < w && top >= -1 && top < h) {
                continue;
            }
            // Weights of the right column and the lower row; the others are one minus these.
            let fx = (px >> (POSITION_BITS - WEIGHT_BITS)) & (WEIGHT_ONE - 1);
            let fy = (py >> (POSITION_BITS - WEIGHT_BITS)) & (WEIGHT_ONE - 1);
            let position = y * width + x;
            if left >= 0 && top >= 0 && left + 1 < w && top + 1 < h {
                // All four inside: the common case, one slice and no per-neighbour checks.
                let base = (top as usize * width + left as usize) * channels;
                let pixels = &image[base..base + row_step + 2 * channels];
                for channel in 0..channels {
                    let p = |offset: usize| i64::from(pixels[offset + channel]);
                    let upper = p(0) * (WEIGHT_ONE - fx) + p(channels) * fx;
                    let lower = p(row_step) * (WEIGHT_ONE - fx) + p(row_step + channels) * fx;
                    let sum = upper * (WEIGHT_ONE - fy) + lower * fy;
                    dst[channel * plane + position] = sum as f32 / DIVISOR;
                }
            } else {
                // On the border: neighbours off the picture count as 0 (the constant fill).
                let inside = |nx: i64, ny: i64| {
                    (nx >= 0 && ny >= 0 && nx < w && ny < h)
                        .then(|| (ny as usize * width + nx as usize) * channels)
                };
                let neighbours = [
                    inside(left, top),
                    inside(left + 1, top),
                    inside(left, top + 1),
                    inside(left + 1, top + 1),
                ];
                let weights = [
                    (WEIGHT_ONE - fx) * (WEIGHT_ONE - fy),
                    fx * (WEIGHT_ONE - fy),
                    (WEIGHT_ONE - fx) * fy,
                    fx * fy,
                ];
                for channel in 0..channels {
                    let mut sum = 0;
                    for (neighbour, weight) in neighbours.iter().zip(weights) {
                        if let Some(index) = neighbour {
                            sum += i64::from(image[index + channel]) * weight;
                        }
                    }
                    dst[channel * plane + position] = sum as f32 / DIVISOR;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::{RngCore, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    /// Every byte value in a pseudo-random order: pictures whose pixels can be told apart.
    fn picture(shape: Shape, salt: u64) -> Vec<u8> {
        let mut rng = ChaCha8Rng::seed_from_u64(salt);
        (0..shape.values()).map(|_| rng.random()).collect()
    }

    fn transformed(image: &[u8], shape: Shape, params: Params) -> Vec<f32> {
        let mut out = Vec::new();
        transform(image, shape, &params, &mut out);
        out
    }

    fn all_on() -> Augment {
        Augment {
            shift: 2,
            rotate: 10.0,
            zoom: 0.1,
            flip: true,
        }
    }

    // --- Parsing ---

    #[test]
    fn parses_any_subset_in_any_order() {
        assert_eq!("shift=2,rotate=10,zoom=0.1,flip".parse(), Ok(all_on()));
        assert_eq!(
            " flip , zoom = 0.1,rotate=10 ,shift=2".parse(),
            Ok(all_on())
        );
        assert_eq!(
            "rotate=12.5".parse(),
            Ok(Augment {
                rotate: 12.5,
                ..Augment::default()
            })
        );
        assert_eq!(
            "shift=64,rotate=180".parse(),
            Ok(Augment {
                shift: 64,
                rotate: 180.0,
                ..Augment::default()
            })
        );
        assert_eq!(
            "flip".parse(),
            Ok(Augment {
                flip: true,
                ..Augment::default()
            })
        );
    }

    #[test]
    fn empty_none_and_zeros_are_no_augmentation() {
        for text in ["", "  ", "none", "shift=0", "rotate=0,zoom=0", "rotate=-0"] {
            let augment: Augment = text.parse().unwrap();
            assert!(augment.is_none(), "{text}");
            assert_eq!(augment.to_string(), "none", "{text}");
        }
    }

    #[test]
    fn refuses_duplicates_unknown_words_and_empty_words() {
        let error = "shift=1,flip,shift=2".parse::<Augment>().unwrap_err();
        assert_eq!(
            error,
            ParseAugmentError::Duplicate {
                word: "shift".into()
            }
        );
        assert!(error.to_string().contains("`shift`"), "{error}");
        assert!("flip,flip".parse::<Augment>().is_err());

        let error = "shift=1,shear=3".parse::<Augment>().unwrap_err();
        let message = error.to_string();
        assert!(message.contains("`shear=3`"), "{message}");
        for word in ["shift=", "rotate=", "zoom=", "flip"] {
            assert!(message.contains(word), "{message}");
        }
        // `none` only stands alone.
        assert!("none,flip".parse::<Augment>().is_err());
        // Names are exact, as the canonical form writes them.
        assert!("Flip".parse::<Augment>().is_err());

        for text in ["flip,", ",flip", "shift=1,,flip"] {
            let error = text.parse::<Augment>().unwrap_err();
            assert!(matches!(error, ParseAugmentError::Empty { .. }), "{text}");
        }
    }

    #[test]
    fn refuses_bad_and_missing_values() {
        for text in [
            "shift=65",
            "shift=-1",
            "shift=1.5",
            "shift=two",
            "shift=",
            "rotate=181",
            "rotate=-10",
            "rotate=NaN",
            "rotate=inf",
            "rotate=ten",
            "zoom=1",
            "zoom=1.5",
            "zoom=-0.1",
            "zoom=nan",
        ] {
            let error = text.parse::<Augment>().unwrap_err();
            assert!(
                matches!(error, ParseAugmentError::BadValue { .. }),
                "{text}: {error:?}"
            );
            // The message quotes the word as written.
            assert!(error.to_string().contains(text), "{text}: {error}");
        }
        for word in ["shift", "rotate", "zoom"] {
            let error = word.parse::<Augment>().unwrap_err();
            assert!(
                matches!(error, ParseAugmentError::MissingValue { .. }),
                "{word}"
            );
            assert!(error.to_string().contains(&format!("`{word}=")), "{error}");
        }
        let error = "flip=true".parse::<Augment>().unwrap_err();
        assert_eq!(
            error,
            ParseAugmentError::UnexpectedValue {
                value: "true".into()
            }
        );
    }

    #[test]
    fn display_is_canonical_and_parses_back() {
        assert_eq!(all_on().to_string(), "shift=2,rotate=10,zoom=0.1,flip");
        assert_eq!(
            "flip,zoom=0.25".parse::<Augment>().unwrap().to_string(),
            "zoom=0.25,flip"
        );
        for augment in [
            Augment::default(),
            all_on(),
            Augment {
                rotate: 0.1 + 0.2,
                zoom: 0.999_999_9,
                ..Augment::default()
            },
            Augment {
                shift: 64,
                rotate: 180.0,
                zoom: f32::MIN_POSITIVE,
                flip: false,
            },
        ] {
            let text = augment.to_string();
            assert_eq!(text.parse::<Augment>(), Ok(augment), "{text}");
        }
    }

    #[test]
    fn serde_uses_the_text_form() {
        let json = serde_json::to_string(&all_on()).unwrap();
        assert_eq!(json, r#""shift=2,rotate=10,zoom=0.1,flip""#);
        assert_eq!(serde_json::from_str::<Augment>(&json).unwrap(), all_on());
        assert_eq!(
            serde_json::to_string(&Augment::default()).unwrap(),
            r#""none""#
        );
        assert_eq!(
            serde_json::from_str::<Augment>(r#""""#).unwrap(),
            Augment::default()
        );
        let error = serde_json::from_str::<Augment>(r#""shift=99""#).unwrap_err();
        assert!(error.to_string().contains("shift=99"), "{error}");
        assert!(serde_json::from_str::<Augment>("3").is_err());
    }

    // --- Pictures ---

    #[test]
    fn no_augmentation_is_normalise_bit_for_bit_and_draws_nothing() {
        for shape in [Shape::new(28, 28, 1), Shape::new(5, 4, 3)] {
            let image = picture(shape, 1);
            let mut rng = ChaCha8Rng::seed_from_u64(7);
            let untouched = rng.clone();
            let mut out = vec![-1.0];
            augment_into(&image, shape, &Augment::default(), &mut rng, &mut out);
            assert_eq!(out[0], -1.0, "appends");
            let expected = model::normalise(&image, shape);
            assert_eq!(out[1..].len(), expected.len());
            for (got, want) in out[1..].iter().zip(&expected) {
                assert_eq!(got.to_bits(), want.to_bits());
            }
            assert_eq!(rng, untouched, "no augmentation draws nothing");
        }
    }

    #[test]
    fn identity_transform_is_normalise_bit_for_bit() {
        for shape in [
            Shape::new(28, 28, 1),
            Shape::new(5, 4, 3),
            Shape::new(1, 1, 2),
        ] {
            let image = picture(shape, 2);
            let got = transformed(&image, shape, Params::IDENTITY);
            let want = model::normalise(&image, shape);
            let bits = |values: &[f32]| values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "{shape}");
        }
    }

    /// The value of output pixel (y, x), channel `channel`, channels first.
    fn at(values: &[f32], shape: Shape, y: usize, x: usize, channel: usize) -> f32 {
        values[channel * shape.height * shape.width + y * shape.width + x]
    }

    fn byte(image: &[u8], shape: Shape, y: usize, x: usize, channel: usize) -> f32 {
        f32::from(image[(y * shape.width + x) * shape.channels + channel]) / 255.0
    }

    #[test]
    fn shift_moves_pixels_by_whole_pixels() {
        let shape = Shape::new(6, 7, 3);
        let image = picture(shape, 3);
        let params = |dx, dy| Params {
            dx,
            dy,
            ..Params::IDENTITY
        };
        let right = transformed(&image, shape, params(1.0, 0.0));
        let up = transformed(&image, shape, params(0.0, -2.0));
        for y in 0..shape.height {
            for x in 0..shape.width {
                for c in 0..shape.channels {
                    let want = if x == 0 {
                        0.0
                    } else {
                        byte(&image, shape, y, x - 1, c)
                    };
                    assert_eq!(at(&right, shape, y, x, c), want, "right ({y}, {x}, {c})");
                    let want = if y + 2 >= shape.height {
                        0.0
                    } else {
                        byte(&image, shape, y + 2, x, c)
                    };
                    assert_eq!(at(&up, shape, y, x, c), want, "up ({y}, {x}, {c})");
                }
            }
        }
    }

    #[test]
    fn half_pixel_shift_interpolates() {
        let shape = Shape::new(1, 3, 1);
        let out = transformed(
            &[0, 100, 200],
            shape,
            Params {
                dx: 0.5,
                ..Params::IDENTITY
            },
        );
        let want = [0.0, 50.0 / 255.0, 150.0 / 255.0];
        for (got, want) in out.iter().zip(want) {
            assert!((got - want).abs() < 1e-6, "{out:?}");
        }
    }

    #[test]
    fn quarter_turn_is_counter_clockwise() {
        // Odd and even sides: the centre is a pixel's centre or a corner between four.
        for side in [5, 4] {
            let shape = Shape::new(side, side, 2);
            let image = picture(shape, 4);
            let out = transformed(
                &image,
                shape,
                Params {
                    angle: 90.0,
                    ..Params::IDENTITY
                },
            );
            // Counter-clockwise: the top-right corner goes to the top-left, (y, x) to
            // (side - 1 - x, y).
            for y in 0..side {
                for x in 0..side {
                    for c in 0..2 {
                        // Exactly: the quarter turn lands on the pixel grid.
                        let got = at(&out, shape, side - 1 - x, y, c);
                        let want = byte(&image, shape, y, x, c);
                        assert_eq!(got.to_bits(), want.to_bits(), "{side}: ({y}, {x}, {c})");
                    }
                }
            }
        }
    }

    #[test]
    fn zoom_grows_a_centred_square() {
        // An 8x8 picture with a 4x4 square in the middle (rows and columns 2-5).
        let shape = Shape::new(8, 8, 1);
        let mut image = vec![0u8; 64];
        for y in 2..6 {
            for x in 2..6 {
                image[y * 8 + x] = 255;
            }
        }
        let out = transformed(
            &image,
            shape,
            Params {
                scale: 2.0,
                ..Params::IDENTITY
            },
        );
        // Doubled about the centre (3.5): output column x reads input 3.5 + (x - 3.5) / 2, so
        // columns 1-6 read inside the square and 0 and 7 read 1.75 and 5.25, a quarter of the
        // way from a background pixel into the square: 0.75 of full ink along that axis.
        let profile = [0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.75];
        for y in 0..8 {
            for x in 0..8 {
                let want = profile[y] * profile[x];
                let got = at(&out, shape, y, x, 0);
                assert!((got - want).abs() < 1e-6, "({y}, {x}): {got} vs {want}");
            }
        }
        // And halving shrinks it back to the middle 2x2 with a soft edge.
        let out = transformed(
            &image,
            shape,
            Params {
                scale: 0.5,
                ..Params::IDENTITY
            },
        );
        assert_eq!(at(&out, shape, 0, 0, 0), 0.0);
        assert_eq!(at(&out, shape, 3, 3, 0), 1.0);
        assert!(out.iter().sum::<f32>() < 16.0 / 2.0);
    }

    #[test]
    fn flip_mirrors_exactly_and_shift_follows_it() {
        let shape = Shape::new(5, 6, 3);
        let image = picture(shape, 5);
        let flipped = transformed(
            &image,
            shape,
            Params {
                flip: true,
                ..Params::IDENTITY
            },
        );
        let flipped_right = transformed(
            &image,
            shape,
            Params {
                flip: true,
                dx: 1.0,
                ..Params::IDENTITY
            },
        );
        let w = shape.width;
        for y in 0..shape.height {
            for x in 0..w {
                for c in 0..3 {
                    let mirrored = byte(&image, shape, y, w - 1 - x, c);
                    assert_eq!(at(&flipped, shape, y, x, c).to_bits(), mirrored.to_bits());
                    // The shift applies after the mirror, in output pixels.
                    let want = if x == 0 {
                        0.0
                    } else {
                        byte(&image, shape, y, w - x, c)
                    };
                    assert_eq!(at(&flipped_right, shape, y, x, c), want);
                }
            }
        }
    }

    #[test]
    fn flip_only_augmentation_mirrors_or_copies_exactly() {
        let shape = Shape::new(28, 28, 1);
        let image = picture(shape, 6);
        let flip = Augment {
            flip: true,
            ..Augment::default()
        };
        let normal = model::normalise(&image, shape);
        let mut mirror = vec![0u8; image.len()];
        for y in 0..28 {
            for x in 0..28 {
                mirror[y * 28 + x] = image[y * 28 + 27 - x];
            }
        }
        let mirrored = model::normalise(&mirror, shape);
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let (mut flips, mut copies) = (0, 0);
        for _ in 0..64 {
            let mut out = Vec::new();
            augment_into(&image, shape, &flip, &mut rng, &mut out);
            if out == mirrored {
                flips += 1;
            } else {
                assert_eq!(out, normal);
                copies += 1;
            }
        }
        assert!(flips > 16 && copies > 16, "{flips} flips, {copies} copies");
    }

    /// Bilinear sampling written the slow, obvious way in f64: the forward map built as a matrix
    /// (rotation times scale times mirror) and inverted numerically, so it shares no formula
    /// with [`Inverse::new`].
    fn reference(image: &[u8], shape: Shape, p: Params) -> Vec<f32> {
        let (h, w, channels) = (shape.height, shape.width, shape.channels);
        let (cx, cy) = ((w as f64 - 1.0) / 2.0, (h as f64 - 1.0) / 2.0);
        let (sin, cos) = f64::from(p.angle).to_radians().sin_cos();
        let s = f64::from(p.scale);
        let m = if p.flip { -1.0 } else { 1.0 };
        // Forward: (u, v) -> R S F (u, v), R = [[cos, sin], [-sin, cos]] (y down).
        let (a, b, c, d) = (cos * s * m, sin * s, -sin * s * m, cos * s);
        let det = a * d - b * c;
        let pixel = |x: i64, y: i64, ch: usize| {
            if x < 0 || y < 0 || x >= w as i64 || y >= h as i64 {
                0.0
            } else {
                f64::from(image[(y as usize * w + x as usize) * channels + ch])
            }
        };
        let mut out = vec![0.0; shape.values()];
        for y in 0..h {
            for x in 0..w {
                let du = x as f64 - cx - f64::from(p.dx);
                let dv = y as f64 - cy - f64::from(p.dy);
                let sx = cx + (d * du - b * dv) / det;
                let sy = cy + (-c * du + a * dv) / det;
                let (left, top) = (sx.floor(), sy.floor());
                let (fx, fy) = (sx - left, sy - top);
                let (left, top) = (left as i64, top as i64);
                for ch in 0..channels {
                    let value = pixel(left, top, ch) * (1.0 - fx) * (1.0 - fy)
                        + pixel(left + 1, top, ch) * fx * (1.0 - fy)
                        + pixel(left, top + 1, ch) * (1.0 - fx) * fy
                        + pixel(left + 1, top + 1, ch) * fx * fy;
                    out[ch * h * w + y * w + x] = (value / 255.0) as f32;
                }
            }
        }
        out
    }

    #[test]
    fn any_transform_matches_plain_bilinear_sampling() {
        let mut rng = ChaCha8Rng::seed_from_u64(15);
        for shape in [
            Shape::new(28, 28, 1),
            Shape::new(7, 5, 3),
            Shape::new(9, 4, 2),
        ] {
            let image = picture(shape, 16);
            for _ in 0..200 {
                let params = Params {
                    dx: rng.random_range(-4.0..4.0),
                    dy: rng.random_range(-4.0..4.0),
                    angle: rng.random_range(-180.0..180.0),
                    scale: rng.random_range(0.5..1.6),
                    flip: rng.random(),
                };
                let got = transformed(&image, shape, params);
                let want = reference(&image, shape, params);
                for (index, (got, want)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (got - want).abs() < 3e-5,
                        "{shape} {params:?} value {index}: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn degenerate_parameters_give_a_picture_not_a_panic() {
        let shape = Shape::new(28, 28, 1);
        let image = picture(shape, 17);
        for params in [
            Params {
                scale: 0.0,
                ..Params::IDENTITY
            },
            Params {
                scale: -1.0,
                ..Params::IDENTITY
            },
            Params {
                angle: f32::NAN,
                ..Params::IDENTITY
            },
            Params {
                dx: f32::INFINITY,
                dy: -1e30,
                ..Params::IDENTITY
            },
            Params {
                dx: 1e9,
                scale: 1e-30,
                angle: 1e30,
                flip: true,
                ..Params::IDENTITY
            },
        ] {
            let out = transformed(&image, shape, params);
            assert_eq!(out.len(), shape.values());
            assert!(out.iter().all(|v| (0.0..=1.0).contains(v)), "{params:?}");
        }
        // Shifted right off the picture: nothing left.
        let gone = transformed(
            &image,
            shape,
            Params {
                dx: 28.0,
                ..Params::IDENTITY
            },
        );
        assert!(gone.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn draws_stay_within_the_settings() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let (mut seen_min, mut seen_max) = (false, false);
        for _ in 0..2000 {
            let p = Params::draw(&all_on(), &mut rng);
            for d in [p.dx, p.dy] {
                assert!(d.fract() == 0.0 && (-2.0..=2.0).contains(&d), "{p:?}");
                seen_min |= d == -2.0;
                seen_max |= d == 2.0;
            }
            assert!((-10.0..=10.0).contains(&p.angle), "{p:?}");
            assert!((0.9..=1.1).contains(&p.scale), "{p:?}");
        }
        assert!(seen_min && seen_max, "both ends of the shift are drawn");
        // Transforms that are off are exactly neutral.
        let p = Params::draw(
            &Augment {
                flip: true,
                ..Augment::default()
            },
            &mut rng,
        );
        assert_eq!(Params { flip: false, ..p }, Params::IDENTITY);
    }

    #[test]
    fn same_seed_same_picture_different_seed_different() {
        let shape = Shape::new(28, 28, 1);
        let image = picture(shape, 10);
        let run = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut out = Vec::new();
            for _ in 0..4 {
                augment_into(&image, shape, &all_on(), &mut rng, &mut out);
            }
            out
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
        assert!(run(1).iter().all(|v| (0.0..=1.0).contains(v)));
    }

    #[test]
    fn every_setting_draws_the_same_number_of_words() {
        let shape = Shape::new(28, 28, 1);
        let image = picture(shape, 11);
        let rotate_only = Augment {
            rotate: 15.0,
            ..Augment::default()
        };
        let flip_only = Augment {
            flip: true,
            ..Augment::default()
        };
        let mut states = Vec::new();
        for augment in [rotate_only, all_on(), flip_only] {
            let mut rng = ChaCha8Rng::seed_from_u64(12);
            for _ in 0..3 {
                augment_into(&image, shape, &augment, &mut rng, &mut Vec::new());
            }
            states.push(rng);
        }
        assert_eq!(states[0], states[1]);
        assert_eq!(states[0], states[2]);
        let mut counted = ChaCha8Rng::seed_from_u64(12);
        for _ in 0..3 * WORDS_PER_PICTURE {
            counted.next_u64();
        }
        assert_eq!(states[0], counted);
    }

    /// `cargo test -p tinycnn-host --lib train::augment -- --ignored --nocapture`: time per
    /// 28x28 picture with everything on.
    #[test]
    #[ignore = "timing"]
    fn time_per_picture() {
        let shape = Shape::new(28, 28, 1);
        let image = picture(shape, 13);
        let mut rng = ChaCha8Rng::seed_from_u64(14);
        let mut out = Vec::with_capacity(shape.values());
        let count = 100_000;
        let started = std::time::Instant::now();
        for _ in 0..count {
            out.clear();
            augment_into(&image, shape, &all_on(), &mut rng, &mut out);
            std::hint::black_box(&out);
        }
        let each = started.elapsed() / count;
        println!("{each:?} per 28x28x1 picture");
        assert!(each < std::time::Duration::from_micros(10), "{each:?}");
    }
}
