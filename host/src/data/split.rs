//! Pictures of one shape with a class each: what every reader of a data set produces.

use sha2::{Digest, Sha256};
use tinycnn::arch::Shape;

/// Pictures of one shape, channels last (row after row, each pixel's channels together, as the
/// core's input is laid out), one byte per value, with one class per picture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    /// Every picture's shape.
    pub shape: Shape,
    /// `len() * shape.values()` values, 0-255.
    pub pixels: Vec<u8>,
    /// One class per picture.
    pub labels: Vec<u16>,
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
        Split {
            shape: self.shape,
            pixels: self.pixels[..count * self.shape.values()].to_vec(),
            labels: self.labels[..count].to_vec(),
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
        }
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
