//! The reference network's shape, as constants shared by the kernels, the
//! model format and the host.
//!
//! ```text
//! input 28x28x1 (u8 pixels)
//!  -> conv 3x3 'same' 64  + ReLU -> max-pool 2x2 -> 14x14x64
//!  -> conv 3x3 'same' 128 + ReLU -> max-pool 2x2 ->  7x7x128
//!  -> conv 3x3 'same' 256 + ReLU -> max-pool 2x2 ->  3x3x256   (7 -> 3 rounds down)
//!  -> flatten 2304 (height, width, channel order)
//!  -> dense 128 + ReLU -> dense 64 + ReLU -> dense 32 + ReLU -> dense 10 (logits)
//! ```
//!
//! Everything is channels-last (NHWC): a tensor of height `H`, width `W` and
//! `C` channels is stored as `[[[T; C]; W]; H]`, see [`Tensor`].

/// A channels-last activation tensor: `tensor[y][x][channel]`.
pub type Tensor<T, const H: usize, const W: usize, const C: usize> = [[[T; C]; W]; H];

/// Height and width of an input image, in pixels.
pub const INPUT_SIDE: usize = 28;
/// Pixels in an input image.
pub const INPUT_PIXELS: usize = INPUT_SIDE * INPUT_SIDE;
/// An input image: 784 grey values, row by row, 0 = background, 255 = ink.
pub type Image = [u8; INPUT_PIXELS];

/// Output channels of the three convolutions.
pub const CONV_CHANNELS: [usize; 3] = [64, 128, 256];
/// Side of the feature map after each convolution + pool: 28 -> 14 -> 7 -> 3.
pub const POOLED_SIDES: [usize; 3] = [14, 7, 3];
/// Inputs of the first dense layer: 3 x 3 x 256.
pub const FLATTENED: usize = POOLED_SIDES[2] * POOLED_SIDES[2] * CONV_CHANNELS[2];
/// Output units of the four dense layers; the last one gives the logits.
pub const DENSE_UNITS: [usize; 4] = [128, 64, 32, CLASSES];
/// Number of classes (digits 0-9).
pub const CLASSES: usize = 10;
/// Taps of a 3x3 kernel.
pub const KERNEL_TAPS: usize = 9;

/// The seven layers that carry weights, in execution order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[allow(missing_docs)] // The names are the documentation.
pub enum Layer {
    Conv1,
    Conv2,
    Conv3,
    Dense1,
    Dense2,
    Dense3,
    Dense4,
}

impl Layer {
    /// All layers in execution order.
    pub const ALL: [Layer; 7] = [
        Layer::Conv1,
        Layer::Conv2,
        Layer::Conv3,
        Layer::Dense1,
        Layer::Dense2,
        Layer::Dense3,
        Layer::Dense4,
    ];

    /// Short lower-case name, as used in logs and `FORMAT.md`.
    pub const fn name(self) -> &'static str {
        match self {
            Layer::Conv1 => "conv1",
            Layer::Conv2 => "conv2",
            Layer::Conv3 => "conv3",
            Layer::Dense1 => "dense1",
            Layer::Dense2 => "dense2",
            Layer::Dense3 => "dense3",
            Layer::Dense4 => "dense4",
        }
    }

    /// Number of outputs (channels or units).
    pub const fn outputs(self) -> usize {
        match self {
            Layer::Conv1 => CONV_CHANNELS[0],
            Layer::Conv2 => CONV_CHANNELS[1],
            Layer::Conv3 => CONV_CHANNELS[2],
            Layer::Dense1 => DENSE_UNITS[0],
            Layer::Dense2 => DENSE_UNITS[1],
            Layer::Dense3 => DENSE_UNITS[2],
            Layer::Dense4 => DENSE_UNITS[3],
        }
    }

    /// Inputs that one output sees: `9 x input channels` for a convolution,
    /// the input length for a dense layer.
    pub const fn fan_in(self) -> usize {
        match self {
            Layer::Conv1 => KERNEL_TAPS,
            Layer::Conv2 => KERNEL_TAPS * CONV_CHANNELS[0],
            Layer::Conv3 => KERNEL_TAPS * CONV_CHANNELS[1],
            Layer::Dense1 => FLATTENED,
            Layer::Dense2 => DENSE_UNITS[0],
            Layer::Dense3 => DENSE_UNITS[1],
            Layer::Dense4 => DENSE_UNITS[2],
        }
    }

    /// Number of weights: `outputs x fan_in`.
    pub const fn weight_count(self) -> usize {
        self.outputs() * self.fan_in()
    }

    /// Whether ReLU follows the layer (all but the last).
    pub const fn has_relu(self) -> bool {
        !matches!(self, Layer::Dense4)
    }

    /// Multiply-accumulates this layer costs per image when computed in
    /// full, the way TensorFlow Lite counts them (every convolution output,
    /// including the row and column that the 7 -> 3 pool discards).
    pub const fn macs(self) -> usize {
        let positions = match self {
            Layer::Conv1 => INPUT_PIXELS,
            Layer::Conv2 => POOLED_SIDES[0] * POOLED_SIDES[0],
            Layer::Conv3 => POOLED_SIDES[1] * POOLED_SIDES[1],
            _ => 1,
        };
        positions * self.weight_count()
    }
}

// The two sums below index in `const` items: they are evaluated while
// compiling, where an out-of-bounds index is a build error, not a panic.

/// Trainable parameters of the whole network (weights and biases).
#[allow(clippy::indexing_slicing)]
pub const PARAMETERS: usize = {
    let mut total = 0;
    let mut i = 0;
    while i < Layer::ALL.len() {
        total += Layer::ALL[i].weight_count() + Layer::ALL[i].outputs();
        i += 1;
    }
    total
};

/// Multiply-accumulates per image, counted as [`Layer::macs`] does.
#[allow(clippy::indexing_slicing)]
pub const MACS: usize = {
    let mut total = 0;
    let mut i = 0;
    while i < Layer::ALL.len() {
        total += Layer::ALL[i].macs();
        i += 1;
    }
    total
};

const _: () = assert!(PARAMETERS == 675_370);
const _: () = assert!(MACS == 29_658_432);
