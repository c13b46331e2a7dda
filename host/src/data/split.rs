//! Pictures of one shape with a class each: what every reader of a data set produces.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use tinycnn::arch::Shape;

use crate::data::audio::AudioSplit;

/// Pictures of one shape, channels last (row after row, each pixel's channels together, as the
/// core's input is laid out), one byte per value, with one class per picture.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    /// Every picture's shape.
    pub shape: Shape,
    /// `len() * shape.values()` values, 0-255.
    pub pixels: Vec<u8>,
    /// One class per picture.
    pub labels: Vec<u16>,
    /// For a keyword set: the values are int8 audio features (each stored as `q + 128`), read
    /// by the network dequantised; the training split also holds the clips. `None` for
    /// pictures (read as `value / 255`).
    pub audio: Option<Arc<AudioSplit>>,
}

impl Split {
    /// Number of pictures.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the split holds no pictures.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values of picture `index`, or `None` past the end.
    pub fn image(&self, index: usize) -> Option<&[u8]> {
        let size = self.shape.values();
        let start = index.checked_mul(size)?;
        self.pixels.get(start..start.checked_add(size)?)
    }

    /// The first `count` pictures (all of them if there are fewer).
    pub fn head(&self, count: usize) -> Split {
        let count = count.min(self.len());
        let indices: Vec<usize> = (0..count).collect();
        Split {
            shape: self.shape,
            pixels: self.pixels[..count * self.shape.values()].to_vec(),
            labels: self.labels[..count].to_vec(),
            audio: self
                .audio
                .as_ref()
                .map(|audio| Arc::new(audio.select(&indices))),
        }
    }

    /// The pictures at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Split {
        let size = self.shape.values();
        let mut pixels = Vec::with_capacity(indices.len() * size);
        for &index in indices {
            pixels.extend_from_slice(&self.pixels[index * size..(index + 1) * size]);
        }
        Split {
            shape: self.shape,
            pixels,
            labels: indices.iter().map(|&index| self.labels[index]).collect(),
            audio: self
                .audio
                .as_ref()
                .map(|audio| Arc::new(audio.select(indices))),
        }
    }

    /// The audio front end whose features the values are, for a keyword set.
    pub fn front_end(&self) -> Option<tinycnn::audio::FrontEndConfig> {
        self.audio.as_ref().map(|audio| audio.front_end)
    }

    /// Pictures per class, for `classes` classes.
    pub fn counts(&self, classes: usize) -> Vec<usize> {
        let mut counts = vec![0; classes];
        for &label in &self.labels {
            if let Some(count) = counts.get_mut(usize::from(label)) {
                *count += 1;
            }
        }
        counts
    }

    pub(crate) fn hash_into(&self, hasher: &mut Sha256) {
        for side in [
            self.shape.height,
            self.shape.width,
            self.shape.channels,
            self.len(),
        ] {
            hasher.update((side as u64).to_le_bytes());
        }
        hasher.update(&self.pixels);
        for label in &self.labels {
            hasher.update(label.to_le_bytes());
        }
    }
}
