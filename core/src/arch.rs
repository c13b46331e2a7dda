//! The network description: an input shape and a sequence of layers, the one
//! source of truth for every shape in the host, the firmware and the tests.
//!
//! ```text
//! input     H x W x C        (C channels; a vector of N values is 1 x 1 x N)
//! conv      KH x KW, F       (sides 1 to 16, stride 1 or 2 per axis, 'same' or 'valid',
//!                             ReLU, ReLU6 or none)
//! depthwise KH x KW, x M     (one filter per input channel, M outputs each; options as conv)
//! pool      2 x 2, stride 2  (max; an odd side drops its last row or column: 7 -> 3)
//! max/avg pool window, stride, padding (TensorFlow's rules; average counts in-bounds taps)
//! global average pool        (H x W x C -> 1 x 1 x C)
//! residual  shortcut         (starts a block: identity, or a 1x1 convolution of F filters,
//!                             stride 1 or 2)
//! add       activation       (ends the block: its last output plus the shortcut)
//! drop      rate             (training only; inference ignores it)
//! flatten                    (height, width, channel order)
//! dense     U units          (ReLU, ReLU6 or none)
//! softmax                    (last layer only, on a vector)
//! ```
//!
//! The network's output is either class scores (the default: a vector of at
//! least two values from a dense layer without activation, optionally
//! followed by softmax) or plain values ([`OutputKind::Values`], e.g. an
//! autoencoder's reconstruction).
//!
//! An [`Architecture`] can only be built valid ([`Architecture::new`] checks
//! every rule and names the offending layer), and everything about it is a
//! `const fn`: the firmware computes its scratch size from the model bytes it
//! embeds while compiling ([`crate::plan`]). The text form people write
//! (`conv3x3:64 pool drop:0.5 ... dense:10`) is in [`crate::text`].
//!
//! Padding follows TensorFlow: a 'same' layer's output side is
//! `ceil(input / stride)`, a 'valid' one's `ceil((input - kernel + 1) / stride)`,
//! and the `max(0, (output - 1) * stride + kernel - input)` padding rows are
//! split with the smaller half before (above, left of) the input.
//!
//! Activations are channels-last (NHWC): a tensor of height `H`, width `W`
//! and `C` channels is stored as `[[[T; C]; W]; H]`.

use core::fmt;

/// Most layers a description may hold.
pub const MAX_LAYERS: usize = 32;
/// Largest input height or width, in pixels.
pub const MAX_SIDE: usize = 256;
/// Largest side of a convolution's or depthwise convolution's kernel.
pub const MAX_KERNEL_SIDE: usize = 16;
/// Largest stride of a convolution or depthwise convolution.
pub const MAX_CONV_STRIDE: usize = 2;
/// Largest depth multiplier of a depthwise convolution.
pub const MAX_DEPTH_MULTIPLIER: usize = 8;
/// Most filters of a convolution (and of a residual block's projection).
pub const MAX_FILTERS: usize = 1024;
/// Most units of a dense layer (and so most classes, and most input values
/// of a vector input).
pub const MAX_UNITS: usize = 4096;
/// Most values a softmax takes: the int8 softmax sums the exponentials of the
/// values' differences from their largest (each at most 1) in fixed point with
/// 9 integer bits, so 511 of them always fit.
pub const MAX_SOFTMAX_VALUES: usize = 511;
/// Fewest classes: the last dense layer's units.
pub const MIN_CLASSES: usize = 2;
/// Most values in one activation tensor: a layer's own output, counted
/// before any pool fused into it.
pub const MAX_TENSOR_VALUES: usize = 1 << 24;
/// Most inputs one output of a convolution or dense layer may see. With int8
/// inputs `|x - zero_point| <= 255` and weights `|w| <= 127`, a sum of this
/// many products stays below `2^31` (65,536 x 255 x 127 = 2,122,383,360), so
/// an int32 accumulator cannot overflow.
pub const MAX_FAN_IN: usize = 65_536;

/// Height, width and channels of an activation tensor (a flattened vector of
/// `n` values is `1 x 1 x n`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Shape {
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// Values per pixel.
    pub channels: usize,
}

impl Shape {
    /// A `height x width x channels` shape.
    pub const fn new(height: usize, width: usize, channels: usize) -> Self {
        Shape {
            height,
            width,
            channels,
        }
    }

    /// A vector of `values` values: `1 x 1 x values`.
    pub const fn vector(values: usize) -> Self {
        Shape::new(1, 1, values)
    }

    /// Whether the shape is a vector (`1 x 1 x n`).
    pub const fn is_vector(&self) -> bool {
        self.height == 1 && self.width == 1
    }

    /// `height * width * channels`, saturating.
    pub const fn values(&self) -> usize {
        self.height
            .saturating_mul(self.width)
            .saturating_mul(self.channels)
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}x{}", self.height, self.width, self.channels)
    }
}

/// What follows a layer's sum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Activation {
    /// The sum itself (Keras's `linear`).
    None,
    /// `max(0, x)`.
    Relu,
    /// `min(max(0, x), 6)`.
    Relu6,
}

impl Activation {
    /// The word of the text form: `linear`, `relu`, `relu6`.
    pub const fn word(self) -> &'static str {
        match self {
            Activation::None => "linear",
            Activation::Relu => "relu",
            Activation::Relu6 => "relu6",
        }
    }

    /// The real range the activation keeps: `(min, max)`, unbounded as infinities.
    pub const fn real_range(self) -> (f32, f32) {
        match self {
            Activation::None => (f32::NEG_INFINITY, f32::INFINITY),
            Activation::Relu => (0.0, f32::INFINITY),
            Activation::Relu6 => (0.0, 6.0),
        }
    }
}

/// How a windowed layer treats the border (TensorFlow's rules; see the
/// module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Padding {
    /// Output side `ceil(input / stride)`, the input framed by zeros.
    Same,
    /// No padding: only windows wholly inside the input.
    Valid,
}

/// The window of a convolution, depthwise convolution or pool: its size, its
/// stride and its padding.
// `repr(C)`, the padding first, and `Conv`'s layout below let a `Layer` take 8 bytes: a
// description is copied by value on a microcontroller's stack (see the assertion at the end).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(C)]
pub struct Window {
    /// Border handling.
    pub padding: Padding,
    /// Rows the window covers.
    pub height: u8,
    /// Columns the window covers.
    pub width: u8,
    /// Rows between two windows.
    pub stride_height: u8,
    /// Columns between two windows.
    pub stride_width: u8,
}

impl Window {
    /// A `side x side` window with stride 1.
    pub const fn square(side: u8, padding: Padding) -> Self {
        Window {
            height: side,
            width: side,
            stride_height: 1,
            stride_width: 1,
            padding,
        }
    }

    /// The window with both strides set to `stride`.
    pub const fn with_stride(self, stride: u8) -> Self {
        Window {
            stride_height: stride,
            stride_width: stride,
            ..self
        }
    }

    /// Output side along one axis, TensorFlow's rule; `None` when a 'valid'
    /// window does not fit or the stride is 0.
    const fn output_side(
        input: usize,
        kernel: usize,
        stride: usize,
        padding: Padding,
    ) -> Option<usize> {
        if stride == 0 || kernel == 0 || input == 0 {
            return None;
        }
        match padding {
            Padding::Same => Some(input.div_ceil(stride)),
            Padding::Valid => {
                if input < kernel {
                    None
                } else {
                    Some((input - kernel + 1).div_ceil(stride))
                }
            }
        }
    }

    /// Padding rows (or columns) before the input along one axis.
    const fn pad_before(input: usize, kernel: usize, stride: usize, output: usize) -> usize {
        let needed = (output.saturating_sub(1)) * stride + kernel;
        needed.saturating_sub(input) / 2
    }

    /// Output height and width on an `input`-shaped map, `None` when the
    /// window does not fit (or is empty).
    pub const fn output(&self, input: Shape) -> Option<(usize, usize)> {
        let height = Window::output_side(
            input.height,
            self.height as usize,
            self.stride_height as usize,
            self.padding,
        );
        let width = Window::output_side(
            input.width,
            self.width as usize,
            self.stride_width as usize,
            self.padding,
        );
        match (height, width) {
            (Some(height), Some(width)) => Some((height, width)),
            _ => None,
        }
    }

    /// Padding rows above and columns left of an `input`-shaped map (the
    /// smaller halves of TensorFlow's padding); `(0, 0)` when the window does
    /// not fit.
    pub const fn padding_before(&self, input: Shape) -> (usize, usize) {
        match self.output(input) {
            Some((height, width)) => (
                Window::pad_before(
                    input.height,
                    self.height as usize,
                    self.stride_height as usize,
                    height,
                ),
                Window::pad_before(
                    input.width,
                    self.width as usize,
                    self.stride_width as usize,
                    width,
                ),
            ),
            None => (0, 0),
        }
    }

    /// Whether this is a square window of odd side at most 5 with stride 1,
    /// whose padding is the same on every side: what the convolution kernels
    /// of [`crate::kernels::ConvGeometry`] (portable, Arm DSP, wide) run.
    pub const fn is_square_stride_one(&self) -> bool {
        self.height == self.width
            && matches!(self.height, 1 | 3 | 5)
            && self.stride_height == 1
            && self.stride_width == 1
    }
}

/// A 2-D convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(C)]
pub struct Conv {
    /// Kernel size, stride and padding.
    pub window: Window,
    /// Activation after the sum.
    pub activation: Activation,
    /// Output channels, 1 to [`MAX_FILTERS`].
    pub filters: u16,
}

impl Conv {
    /// A `side x side` convolution with stride 1.
    pub const fn square(side: u8, padding: Padding, filters: u16, activation: Activation) -> Self {
        Conv {
            window: Window::square(side, padding),
            filters,
            activation,
        }
    }

    /// The kernel side of a square convolution (its height).
    pub const fn side(&self) -> usize {
        self.window.height as usize
    }

    /// Zero rows and columns added on each side of a square, stride-1
    /// convolution ([`Window::is_square_stride_one`]).
    pub const fn pad(&self) -> usize {
        match self.window.padding {
            Padding::Same => self.side().saturating_sub(1) / 2,
            Padding::Valid => 0,
        }
    }

    /// Output shape for `input`, `None` when the kernel does not fit.
    pub const fn output(&self, input: Shape) -> Option<Shape> {
        match self.window.output(input) {
            Some((height, width)) => Some(Shape::new(height, width, self.filters as usize)),
            None => None,
        }
    }
}

/// A depthwise convolution: each input channel convolved with its own
/// `multiplier` filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Depthwise {
    /// Kernel size, stride and padding.
    pub window: Window,
    /// Output channels per input channel, 1 to [`MAX_DEPTH_MULTIPLIER`].
    pub multiplier: u8,
    /// Activation after the sum.
    pub activation: Activation,
}

/// What a pool keeps of its window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PoolKind {
    /// The largest value.
    Max,
    /// The mean of the values inside the input (padding is not counted).
    Average,
}

/// A max or average pool of any window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Pool {
    /// Max or average.
    pub kind: PoolKind,
    /// Window size, stride and padding.
    pub window: Window,
}

/// How a residual block's input reaches its `add`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Shortcut {
    /// As it is.
    Identity,
    /// Through a 1x1 convolution ('same', no activation).
    Projection {
        /// Output channels.
        filters: u16,
        /// Stride on both axes, 1 or 2.
        stride: u8,
    },
}

impl Shortcut {
    /// The shortcut's shape for a block whose input is `input`.
    pub const fn output(&self, input: Shape) -> Shape {
        match *self {
            Shortcut::Identity => input,
            Shortcut::Projection { filters, stride } => {
                let stride = if stride == 0 { 1 } else { stride as usize };
                Shape::new(
                    input.height.div_ceil(stride),
                    input.width.div_ceil(stride),
                    filters as usize,
                )
            }
        }
    }

    /// The projection as a convolution, `None` for an identity shortcut.
    pub const fn projection(&self) -> Option<Conv> {
        match *self {
            Shortcut::Identity => None,
            Shortcut::Projection { filters, stride } => Some(Conv {
                window: Window::square(1, Padding::Same).with_stride(stride),
                filters,
                activation: Activation::None,
            }),
        }
    }
}

/// A fully connected layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Dense {
    /// Output units, 1 to [`MAX_UNITS`].
    pub units: u16,
    /// Activation after the sum.
    pub activation: Activation,
}

/// What the network's output is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum OutputKind {
    /// Scores of classes: the largest names the class.
    Classes,
    /// Values with no class meaning (a reconstruction, a regression).
    Values,
}

/// One layer of a description.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Layer {
    /// 2-D convolution.
    Conv(Conv),
    /// 2x2 max-pool with stride 2, rounding the output size down.
    MaxPool,
    /// Dropout with this rate in thousandths, 1..=999 (training only).
    Dropout(u16),
    /// Flattens a map to a vector in height, width, channel order.
    Flatten,
    /// Fully connected layer.
    Dense(Dense),
    /// Depthwise convolution.
    Depthwise(Depthwise),
    /// Max or average pool of any window, stride and padding.
    Pool(Pool),
    /// The mean of each channel over the whole map.
    GlobalAveragePool,
    /// Starts a residual block: the layers up to the next [`Layer::Add`] run
    /// on the block's input, and the shortcut is kept for the addition.
    Residual(Shortcut),
    /// Ends a residual block: the block's last output plus the shortcut,
    /// then the activation.
    Add(Activation),
    /// Softmax over the output vector (last layer only).
    Softmax,
}

/// The kinds of layers, for names and messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum LayerKind {
    /// [`Layer::Conv`].
    Conv,
    /// [`Layer::MaxPool`] and [`Layer::Pool`] of kind max.
    Pool,
    /// [`Layer::Dropout`].
    Dropout,
    /// [`Layer::Flatten`].
    Flatten,
    /// [`Layer::Dense`].
    Dense,
    /// [`Layer::Depthwise`].
    Depthwise,
    /// [`Layer::Pool`] of kind average.
    AveragePool,
    /// [`Layer::GlobalAveragePool`].
    GlobalAveragePool,
    /// [`Layer::Residual`].
    Residual,
    /// [`Layer::Add`].
    Add,
    /// [`Layer::Softmax`].
    Softmax,
}

/// Number of [`LayerKind`]s.
const KINDS: usize = 11;

impl LayerKind {
    /// The word that starts this kind's names: `conv`, `pool`, `drop`,
    /// `flatten`, `dense`, `dw`, `avgpool`, `gap`, `residual`, `add`, `softmax`.
    pub const fn word(self) -> &'static str {
        match self {
            LayerKind::Conv => "conv",
            LayerKind::Pool => "pool",
            LayerKind::Dropout => "drop",
            LayerKind::Flatten => "flatten",
            LayerKind::Dense => "dense",
            LayerKind::Depthwise => "dw",
            LayerKind::AveragePool => "avgpool",
            LayerKind::GlobalAveragePool => "gap",
            LayerKind::Residual => "residual",
            LayerKind::Add => "add",
            LayerKind::Softmax => "softmax",
        }
    }

    const fn slot(self) -> usize {
        match self {
            LayerKind::Conv => 0,
            LayerKind::Pool => 1,
            LayerKind::Dropout => 2,
            LayerKind::Flatten => 3,
            LayerKind::Dense => 4,
            LayerKind::Depthwise => 5,
            LayerKind::AveragePool => 6,
            LayerKind::GlobalAveragePool => 7,
            LayerKind::Residual => 8,
            LayerKind::Add => 9,
            LayerKind::Softmax => 10,
        }
    }
}

impl Layer {
    /// This layer's kind.
    pub const fn kind(&self) -> LayerKind {
        match self {
            Layer::Conv(_) => LayerKind::Conv,
            Layer::MaxPool => LayerKind::Pool,
            Layer::Dropout(_) => LayerKind::Dropout,
            Layer::Flatten => LayerKind::Flatten,
            Layer::Dense(_) => LayerKind::Dense,
            Layer::Depthwise(_) => LayerKind::Depthwise,
            Layer::Pool(Pool {
                kind: PoolKind::Max,
                ..
            }) => LayerKind::Pool,
            Layer::Pool(Pool {
                kind: PoolKind::Average,
                ..
            }) => LayerKind::AveragePool,
            Layer::GlobalAveragePool => LayerKind::GlobalAveragePool,
            Layer::Residual(_) => LayerKind::Residual,
            Layer::Add(_) => LayerKind::Add,
            Layer::Softmax => LayerKind::Softmax,
        }
    }

    /// Whether the layer has weights (a convolution, depthwise convolution,
    /// dense layer, or a residual block's projection).
    pub const fn has_weights(&self) -> bool {
        matches!(
            self,
            Layer::Conv(_)
                | Layer::Dense(_)
                | Layer::Depthwise(_)
                | Layer::Residual(Shortcut::Projection { .. })
        )
    }

    /// Whether the layer has a record in a model file: the layers with
    /// weights, and the additions and softmax, whose int8 records hold their
    /// requantisation (their f32 records are empty).
    pub const fn has_record(&self) -> bool {
        self.has_weights() || matches!(self, Layer::Add(_) | Layer::Softmax)
    }

    /// Whether the layer exists only in the version 3 model format (anything
    /// the tutorial's vocabulary of version 2 cannot say).
    pub const fn needs_version_3(&self) -> bool {
        match self {
            Layer::Conv(conv) => {
                !conv.window.is_square_stride_one() || matches!(conv.activation, Activation::Relu6)
            }
            Layer::Dense(dense) => matches!(dense.activation, Activation::Relu6),
            Layer::MaxPool | Layer::Dropout(_) | Layer::Flatten => false,
            _ => true,
        }
    }
}

/// A layer's name: its kind and its 1-based number among the layers of that
/// kind, in description order, as in logs and messages (`conv1`, `pool2`,
/// `dense4`, `dw3`, `add1`; `flatten` and `softmax` alone).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LayerName {
    /// Kind of layer.
    pub kind: LayerKind,
    /// 1-based number among the layers of this kind.
    pub number: u8,
}

impl LayerName {
    const fn alone(kind: LayerKind) -> bool {
        matches!(kind, LayerKind::Flatten | LayerKind::Softmax)
    }
}

impl fmt::Display for LayerName {
    /// `conv1`, `pool2`, ...; `flatten` and `softmax` alone (there is only one).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if LayerName::alone(self.kind) {
            f.write_str(self.kind.word())
        } else {
            write!(f, "{}{}", self.kind.word(), self.number)
        }
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for LayerName {
    fn format(&self, f: defmt::Formatter<'_>) {
        if LayerName::alone(self.kind) {
            defmt::write!(f, "{=str}", self.kind.word())
        } else {
            defmt::write!(f, "{=str}{=u8}", self.kind.word(), self.number)
        }
    }
}

/// Why a description is not valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Problem {
    /// The input's height or width is 0 or above [`MAX_SIDE`].
    InputSide {
        /// Height.
        height: usize,
        /// Width.
        width: usize,
    },
    /// The input has 0 or more than [`MAX_UNITS`] channels.
    InputChannels {
        /// Channels found.
        channels: usize,
    },
    /// No layers.
    NoLayers,
    /// More than [`MAX_LAYERS`] layers.
    TooManyLayers {
        /// Layers given.
        count: usize,
    },
    /// A convolution kernel side of 0 or above [`MAX_KERNEL_SIDE`].
    KernelSide {
        /// Kernel height.
        height: usize,
        /// Kernel width.
        width: usize,
    },
    /// A convolution stride other than 1 or 2, or a pool stride of 0.
    Stride {
        /// Stride along the height.
        height: usize,
        /// Stride along the width.
        width: usize,
    },
    /// A pool window with a side of 0 (a window's sides are at most 255).
    PoolWindow {
        /// Window height.
        height: usize,
        /// Window width.
        width: usize,
    },
    /// A depthwise convolution's multiplier of 0 or above [`MAX_DEPTH_MULTIPLIER`].
    DepthMultiplier {
        /// Multiplier given.
        multiplier: usize,
    },
    /// A convolution with 0 or more than [`MAX_FILTERS`] filters.
    Filters {
        /// Filters given.
        filters: usize,
    },
    /// A dense layer with 0 or more than [`MAX_UNITS`] units.
    Units {
        /// Units given.
        units: usize,
    },
    /// A dropout rate outside 1..=999 thousandths.
    DropoutRate {
        /// Rate given, in thousandths.
        thousandths: u16,
    },
    /// A 'valid' window larger than its input.
    KernelLargerThanInput {
        /// Window height.
        height: usize,
        /// Window width.
        width: usize,
        /// Input shape.
        input: Shape,
    },
    /// A 2x2 max-pool on a map smaller than 2x2.
    PoolTooSmall {
        /// Input shape.
        input: Shape,
    },
    /// A map layer (convolution, pool, residual block) after `flatten` or a
    /// dense layer.
    MapLayerAfterFlatten,
    /// A second `flatten`.
    FlattenTwice,
    /// A dense layer on a map that was not flattened.
    DenseWithoutFlatten,
    /// A layer whose output would hold more than [`MAX_TENSOR_VALUES`] values.
    TensorTooLarge {
        /// Output shape.
        output: Shape,
    },
    /// An output that sees more than [`MAX_FAN_IN`] inputs.
    FanInTooLarge {
        /// Inputs per output.
        fan_in: usize,
    },
    /// A residual block inside another.
    NestedResidual,
    /// An `add` with no residual block open.
    AddWithoutResidual,
    /// A residual block with no `add` before the end.
    UnclosedResidual,
    /// A residual block with no layer between its start and its `add`.
    EmptyResidual,
    /// `flatten` or a dense layer inside a residual block.
    VectorInResidual,
    /// A residual block whose layers end in another shape than its shortcut.
    ResidualShapes {
        /// What the block's layers produce.
        body: Shape,
        /// What the shortcut holds.
        shortcut: Shape,
    },
    /// A softmax that is not the last layer.
    SoftmaxNotLast,
    /// A softmax on a map instead of a vector.
    SoftmaxOnMap,
    /// A softmax over more than [`MAX_SOFTMAX_VALUES`] values.
    SoftmaxTooWide {
        /// Values it would take.
        values: usize,
    },
    /// A classifier whose last layer (before an optional softmax) is not a
    /// dense layer.
    LastNotDense,
    /// A classifier whose last dense layer has an activation.
    LogitsActivation,
    /// A classifier with fewer than [`MIN_CLASSES`] outputs.
    TooFewClasses {
        /// Outputs of the last layer.
        classes: usize,
    },
    /// A network that ends in dropout.
    LastIsDropout,
}

/// A rejected description: the layer at fault (its 0-based index in the
/// description and its name; `None` for the input or the whole list) and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArchError {
    /// Index of the offending layer in the description.
    pub index: Option<usize>,
    /// Name of the offending layer.
    pub name: Option<LayerName>,
    /// What is wrong.
    pub problem: Problem,
}

#[cfg(feature = "defmt")]
impl defmt::Format for ArchError {
    fn format(&self, f: defmt::Formatter<'_>) {
        match self.name {
            Some(name) => defmt::write!(f, "{}: {}", name, self.problem),
            None => defmt::write!(f, "{}", self.problem),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Problem::InputSide { height, width } => write!(
                f,
                "input of {height}x{width} pixels: each side must be 1 to {MAX_SIDE}"
            ),
            Problem::InputChannels { channels } => write!(
                f,
                "input with {channels} channels: 1 to {MAX_UNITS} are supported"
            ),
            Problem::NoLayers => write!(f, "the description has no layers"),
            Problem::TooManyLayers { count } => {
                write!(f, "{count} layers, more than the {MAX_LAYERS} supported")
            }
            Problem::KernelSide { height, width } => write!(
                f,
                "a {height}x{width} kernel: each side must be 1 to {MAX_KERNEL_SIDE}"
            ),
            Problem::Stride { height, width } => write!(
                f,
                "stride {height}x{width}: convolutions take stride 1 or 2 on each axis, \
                 pools at least 1"
            ),
            Problem::PoolWindow { height, width } => write!(
                f,
                "a {height}x{width} pool window: each side must be 1 to 255"
            ),
            Problem::DepthMultiplier { multiplier } => write!(
                f,
                "depth multiplier {multiplier}: 1 to {MAX_DEPTH_MULTIPLIER} are supported"
            ),
            Problem::Filters { filters } => {
                write!(f, "{filters} filters: 1 to {MAX_FILTERS} are supported")
            }
            Problem::Units { units } => {
                write!(f, "{units} units: 1 to {MAX_UNITS} are supported")
            }
            Problem::DropoutRate { thousandths } => write!(
                f,
                "dropout rate {}.{:03}: it must be above 0 and below 1",
                thousandths / 1000,
                thousandths % 1000
            ),
            Problem::KernelLargerThanInput {
                height,
                width,
                input,
            } => write!(
                f,
                "a {height}x{width} 'valid' window needs an input of at least \
                 {height}x{width}, this one gets {input}"
            ),
            Problem::PoolTooSmall { input } => write!(
                f,
                "a 2x2 max-pool needs a map of at least 2x2, this one gets {input}"
            ),
            Problem::MapLayerAfterFlatten => write!(
                f,
                "convolutions, pools and residual blocks work on maps, but the map was \
                 already flattened"
            ),
            Problem::FlattenTwice => write!(f, "the map is already flattened"),
            Problem::DenseWithoutFlatten => write!(
                f,
                "a dense layer needs a vector: put `flatten` before the first dense layer"
            ),
            Problem::TensorTooLarge { output } => write!(
                f,
                "its output {output} holds {} values, more than the {MAX_TENSOR_VALUES} supported",
                output.values()
            ),
            Problem::FanInTooLarge { fan_in } => write!(
                f,
                "each output sees {fan_in} inputs, more than the {MAX_FAN_IN} that keep an \
                 int32 sum from overflowing"
            ),
            Problem::NestedResidual => write!(
                f,
                "a residual block starts inside another: end the first with `add`"
            ),
            Problem::AddWithoutResidual => {
                write!(f, "`add` ends a residual block, but none was started")
            }
            Problem::UnclosedResidual => {
                write!(
                    f,
                    "the residual block is not ended: put `add` after its layers"
                )
            }
            Problem::EmptyResidual => write!(f, "the residual block has no layers"),
            Problem::VectorInResidual => write!(
                f,
                "a residual block holds maps: `flatten` and dense layers go after its `add`"
            ),
            Problem::ResidualShapes { body, shortcut } => write!(
                f,
                "the block's layers give {body} but its shortcut holds {shortcut}: they must \
                 match (a `residual:FILTERS:s2` shortcut projects the input)"
            ),
            Problem::SoftmaxNotLast => write!(f, "softmax must be the last layer"),
            Problem::SoftmaxOnMap => {
                write!(f, "softmax works on a vector: put it after a dense layer")
            }
            Problem::SoftmaxTooWide { values } => write!(
                f,
                "softmax over {values} values: the int8 softmax takes at most \
                 {MAX_SOFTMAX_VALUES}"
            ),
            Problem::LastNotDense => write!(
                f,
                "the last layer of a classifier must be a dense layer (softmax may follow it): \
                 it gives the scores of the classes"
            ),
            Problem::LogitsActivation => write!(
                f,
                "the last dense layer gives the logits and has no activation"
            ),
            Problem::TooFewClasses { classes } => write!(
                f,
                "the last dense layer gives {classes} classes, at least {MIN_CLASSES} are needed"
            ),
            Problem::LastIsDropout => write!(f, "the network cannot end in dropout"),
        }
    }
}

impl fmt::Display for ArchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.index, self.name) {
            (Some(index), Some(name)) => {
                write!(f, "layer {} ({name}): {}", index + 1, self.problem)
            }
            _ => write!(f, "{}", self.problem),
        }
    }
}

impl core::error::Error for ArchError {}

/// A valid network description: an input shape, 1 to [`MAX_LAYERS`] layers
/// and what its output means. Only [`Architecture::new`] and
/// [`Architecture::with_output`] build one, so every value of this type has
/// passed validation.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Architecture {
    input: Shape,
    layers: [Layer; MAX_LAYERS],
    len: usize,
    output_kind: OutputKind,
}

impl fmt::Debug for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Architecture")
            .field("input", &self.input)
            .field("layers", &self.layers())
            .field("output_kind", &self.output_kind)
            .finish()
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for Architecture {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "Architecture {{ input: {}, layers: {}, output: {} }}",
            self.input,
            self.layers(),
            self.output_kind
        );
    }
}

/// The residual block a walk is inside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OpenBlock {
    /// Index of its [`Layer::Residual`].
    pub(crate) start: usize,
    /// The shortcut's shape.
    pub(crate) shortcut: Shape,
}

/// Where a walk over a description stands: the next layer's index, the shape
/// so far, the residual block it is inside, and how many layers of each kind
/// it has passed (for names and record positions). Copy it to look ahead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Walk {
    index: usize,
    shape: Shape,
    flattened: bool,
    block: Option<OpenBlock>,
    records: usize,
    counts: [u8; KINDS],
}

impl Walk {
    const fn name_of(&mut self, kind: LayerKind) -> LayerName {
        let mut number = 0;
        if let Some((_, [slot, ..])) = self.counts.split_at_mut_checked(kind.slot()) {
            *slot = slot.saturating_add(1);
            number = *slot;
        }
        LayerName { kind, number }
    }
}

/// One layer of a valid description with everything derived from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerInfo {
    /// 0-based position in the description.
    pub index: usize,
    /// The layer.
    pub layer: Layer,
    /// Its name (`conv1`, ...).
    pub name: LayerName,
    /// 0-based position among the layers with a record in a model file
    /// ([`Layer::has_record`]), which is its record's position.
    pub record: Option<usize>,
    /// Shape it reads.
    pub input: Shape,
    /// Shape it writes. A [`Layer::Residual`] leaves the main line as it is:
    /// its output is its input (the shortcut is [`LayerInfo::shortcut`]).
    pub output: Shape,
}

impl LayerInfo {
    /// For a [`Layer::Residual`], the shortcut it keeps; for a [`Layer::Add`],
    /// the shortcut it adds (its output's shape); `None` otherwise.
    pub const fn shortcut(&self) -> Option<Shape> {
        match self.layer {
            Layer::Residual(shortcut) => Some(shortcut.output(self.input)),
            Layer::Add(_) => Some(self.output),
            _ => None,
        }
    }

    /// Inputs one output sees: `KH x KW x input channels` for a convolution,
    /// `KH x KW` for a depthwise convolution, the input channels for a
    /// residual projection, the input length for a dense layer, 0 otherwise.
    pub const fn fan_in(&self) -> usize {
        match self.layer {
            Layer::Conv(conv) => {
                conv.window.height as usize * conv.window.width as usize * self.input.channels
            }
            Layer::Depthwise(depthwise) => {
                depthwise.window.height as usize * depthwise.window.width as usize
            }
            Layer::Residual(Shortcut::Projection { .. }) => self.input.channels,
            Layer::Dense(_) => self.input.values(),
            _ => 0,
        }
    }

    /// Outputs with their own weights and bias: filters or units, 0 otherwise.
    pub const fn outputs(&self) -> usize {
        match self.layer {
            Layer::Conv(conv) => conv.filters as usize,
            Layer::Depthwise(depthwise) => self.input.channels * depthwise.multiplier as usize,
            Layer::Residual(Shortcut::Projection { filters, .. }) => filters as usize,
            Layer::Dense(dense) => dense.units as usize,
            _ => 0,
        }
    }

    /// Number of weights (`outputs x fan_in`).
    pub const fn weights(&self) -> usize {
        self.outputs() * self.fan_in()
    }

    /// Trainable parameters: weights and biases (batch normalisation folded
    /// into them).
    pub const fn parameters(&self) -> usize {
        self.weights() + self.outputs()
    }

    /// Multiply-accumulates per image, counted as TensorFlow Lite counts them
    /// (every convolution output, including rows and columns that a following
    /// pool drops; pools, additions and softmax count none).
    pub const fn macs(&self) -> usize {
        match self.layer {
            Layer::Conv(_) | Layer::Depthwise(_) => {
                self.output.height * self.output.width * self.weights()
            }
            Layer::Residual(Shortcut::Projection { .. }) => match self.shortcut() {
                Some(shortcut) => shortcut.height * shortcut.width * self.weights(),
                None => 0,
            },
            Layer::Dense(_) => self.weights(),
            _ => 0,
        }
    }

    /// The activation after the sum (`None` for layers without one).
    pub const fn activation(&self) -> Activation {
        match self.layer {
            Layer::Conv(conv) => conv.activation,
            Layer::Depthwise(depthwise) => depthwise.activation,
            Layer::Dense(dense) => dense.activation,
            Layer::Add(activation) => activation,
            _ => Activation::None,
        }
    }
}

const fn fail(index: usize, name: LayerName, problem: Problem) -> ArchError {
    ArchError {
        index: Some(index),
        name: Some(name),
        problem,
    }
}

const fn fail_whole(problem: Problem) -> ArchError {
    ArchError {
        index: None,
        name: None,
        problem,
    }
}

/// The tutorial's 2x2 stride-2 'valid' max-pool is [`Layer::MaxPool`] however it is given:
/// one description, one model file, and a pool the convolution before it fuses.
const fn canonical(layer: Layer) -> Layer {
    match layer {
        Layer::Pool(Pool {
            kind: PoolKind::Max,
            window:
                Window {
                    height: 2,
                    width: 2,
                    stride_height: 2,
                    stride_width: 2,
                    padding: Padding::Valid,
                },
        }) => Layer::MaxPool,
        other => other,
    }
}

/// Checks a convolution's or depthwise convolution's window.
const fn check_conv_window(window: &Window) -> Option<Problem> {
    let (height, width) = (window.height as usize, window.width as usize);
    if height == 0 || width == 0 || height > MAX_KERNEL_SIDE || width > MAX_KERNEL_SIDE {
        return Some(Problem::KernelSide { height, width });
    }
    let (stride_height, stride_width) =
        (window.stride_height as usize, window.stride_width as usize);
    if stride_height == 0
        || stride_width == 0
        || stride_height > MAX_CONV_STRIDE
        || stride_width > MAX_CONV_STRIDE
    {
        return Some(Problem::Stride {
            height: stride_height,
            width: stride_width,
        });
    }
    None
}

/// The output of a window on `input`, or the problem.
const fn window_output(window: &Window, input: Shape, channels: usize) -> Result<Shape, Problem> {
    match window.output(input) {
        Some((height, width)) => Ok(Shape::new(height, width, channels)),
        None => Err(Problem::KernelLargerThanInput {
            height: window.height as usize,
            width: window.width as usize,
            input,
        }),
    }
}

impl Architecture {
    /// Validates `input` and `layers` as a classifier's description.
    pub const fn new(input: Shape, layers: &[Layer]) -> Result<Self, ArchError> {
        Architecture::with_output(input, layers, OutputKind::Classes)
    }

    /// Validates `input` and `layers` as a description whose output is `output_kind`.
    pub const fn with_output(
        input: Shape,
        layers: &[Layer],
        output_kind: OutputKind,
    ) -> Result<Self, ArchError> {
        if layers.len() > MAX_LAYERS {
            return Err(fail_whole(Problem::TooManyLayers {
                count: layers.len(),
            }));
        }
        let mut architecture = Architecture::empty(input, output_kind);
        let mut rest = layers;
        while let [layer, tail @ ..] = rest {
            architecture.push(*layer);
            rest = tail;
        }
        match architecture.check() {
            Ok(()) => Ok(architecture),
            Err(error) => Err(error),
        }
    }

    /// A description without layers, to be filled in place by [`Architecture::push`] and
    /// then checked ([`Architecture::check`]): the model-file decoder builds one so, without
    /// copying the layers from one array into another (a description takes hundreds of bytes
    /// of a microcontroller's stack).
    pub(crate) const fn empty(input: Shape, output_kind: OutputKind) -> Self {
        Architecture {
            input,
            layers: [Layer::Flatten; MAX_LAYERS],
            len: 0,
            output_kind,
        }
    }

    /// Appends `layer` (in its canonical form); `false` when the description is full.
    pub(crate) const fn push(&mut self, layer: Layer) -> bool {
        match self.layers.split_at_mut_checked(self.len) {
            Some((_, [slot, ..])) => {
                *slot = canonical(layer);
                self.len += 1;
                true
            }
            _ => false,
        }
    }

    /// Sets what the output means (the decoder reads it after the layers).
    pub(crate) const fn set_output_kind(&mut self, output_kind: OutputKind) {
        self.output_kind = output_kind;
    }

    /// Checks every rule of a description; [`Architecture::new`] and the decoder call it.
    pub(crate) const fn check(&self) -> Result<(), ArchError> {
        let input = self.input;
        if input.height == 0
            || input.width == 0
            || input.height > MAX_SIDE
            || input.width > MAX_SIDE
        {
            return Err(fail_whole(Problem::InputSide {
                height: input.height,
                width: input.width,
            }));
        }
        if input.channels == 0 || input.channels > MAX_UNITS {
            return Err(fail_whole(Problem::InputChannels {
                channels: input.channels,
            }));
        }
        if self.len == 0 {
            return Err(fail_whole(Problem::NoLayers));
        }
        let architecture = self;
        let output_kind = self.output_kind;
        // Walk every layer once: each check needs the shape the layers before
        // it produced.
        let mut walk = architecture.start();
        let mut last = None;
        let mut before_last = None;
        while let Some(step) = architecture.advance(&mut walk) {
            match step {
                Ok(info) => {
                    before_last = last;
                    last = Some(info);
                }
                Err(error) => return Err(error),
            }
        }
        let Some(last) = last else {
            return Err(fail_whole(Problem::NoLayers));
        };
        if let Some(block) = walk.block {
            return match architecture.layer(block.start) {
                Some(info) => Err(fail(info.index, info.name, Problem::UnclosedResidual)),
                None => Err(fail_whole(Problem::UnclosedResidual)),
            };
        }
        if let Layer::Dropout(_) = last.layer {
            return Err(fail(last.index, last.name, Problem::LastIsDropout));
        }
        if let OutputKind::Values = output_kind {
            return Ok(());
        }
        // A classifier: dense logits, then an optional softmax.
        let logits = match (last.layer, before_last) {
            (Layer::Softmax, Some(before)) => before,
            _ => last,
        };
        match logits.layer {
            Layer::Dense(dense) => {
                if !matches!(dense.activation, Activation::None) {
                    return Err(fail(logits.index, logits.name, Problem::LogitsActivation));
                }
                if (dense.units as usize) < MIN_CLASSES {
                    return Err(fail(
                        logits.index,
                        logits.name,
                        Problem::TooFewClasses {
                            classes: dense.units as usize,
                        },
                    ));
                }
                Ok(())
            }
            _ => Err(fail(logits.index, logits.name, Problem::LastNotDense)),
        }
    }

    /// The network of the Keras MNIST tutorial, the default and the showcase:
    ///
    /// ```text
    /// input 28x28x1
    /// conv3x3:64  pool drop:0.5     -> 14x14x64
    /// conv3x3:128 pool drop:0.5     ->  7x7x128
    /// conv3x3:256 pool drop:0.5     ->  3x3x256 (7 -> 3 rounds down)
    /// flatten                       ->  2304
    /// dense:128 dense:64 dense:32   (ReLU)
    /// dense:10                      (logits)
    /// ```
    pub const REFERENCE: Architecture = {
        const fn conv(filters: u16) -> Layer {
            Layer::Conv(Conv::square(3, Padding::Same, filters, Activation::Relu))
        }
        const fn dense(units: u16, activation: Activation) -> Layer {
            Layer::Dense(Dense { units, activation })
        }
        const HALF: Layer = Layer::Dropout(500);
        let layers = [
            conv(64),
            Layer::MaxPool,
            HALF,
            conv(128),
            Layer::MaxPool,
            HALF,
            conv(256),
            Layer::MaxPool,
            HALF,
            Layer::Flatten,
            dense(128, Activation::Relu),
            dense(64, Activation::Relu),
            dense(32, Activation::Relu),
            dense(10, Activation::None),
        ];
        match Architecture::new(Shape::new(28, 28, 1), &layers) {
            Ok(architecture) => architecture,
            Err(_) => panic!("the reference network is a valid description"),
        }
    };

    /// The input shape.
    pub const fn input(&self) -> Shape {
        self.input
    }

    /// The layers, in order.
    pub const fn layers(&self) -> &[Layer] {
        match self.layers.split_at_checked(self.len) {
            Some((layers, _)) => layers,
            None => &self.layers,
        }
    }

    /// What the output means: classes or values.
    pub const fn output_kind(&self) -> OutputKind {
        self.output_kind
    }

    /// Whether the output names classes.
    pub const fn is_classifier(&self) -> bool {
        matches!(self.output_kind, OutputKind::Classes)
    }

    /// Whether the last layer is a softmax.
    pub const fn ends_in_softmax(&self) -> bool {
        matches!(self.layers(), [.., Layer::Softmax])
    }

    /// Whether a model file of this description needs format version 3.
    pub const fn needs_version_3(&self) -> bool {
        if !self.is_classifier() || !(self.input.channels == 1 || self.input.channels == 3) {
            return true;
        }
        let mut rest = self.layers();
        while let [layer, tail @ ..] = rest {
            if layer.needs_version_3() {
                return true;
            }
            rest = tail;
        }
        false
    }

    /// The output shape: `1 x 1 x classes` for a classifier.
    pub const fn output(&self) -> Shape {
        let mut walk = self.start();
        while let Some(Ok(_)) = self.advance(&mut walk) {}
        walk.shape
    }

    /// Number of classes of a classifier (the output's values).
    pub const fn classes(&self) -> usize {
        self.output().values()
    }

    /// Number of layers with weights (convolutions, depthwise convolutions,
    /// dense layers, residual projections).
    pub const fn weighted_layers(&self) -> usize {
        let mut count = 0;
        let mut rest = self.layers();
        while let [layer, tail @ ..] = rest {
            if layer.has_weights() {
                count += 1;
            }
            rest = tail;
        }
        count
    }

    /// Number of layer records in a model file ([`Layer::has_record`]).
    pub const fn record_layers(&self) -> usize {
        let mut count = 0;
        let mut rest = self.layers();
        while let [layer, tail @ ..] = rest {
            if layer.has_record() {
                count += 1;
            }
            rest = tail;
        }
        count
    }

    /// Information about layer `index` (0-based), `None` past the end.
    pub const fn layer(&self, index: usize) -> Option<LayerInfo> {
        let mut walk = self.start();
        while let Some(Ok(info)) = self.advance(&mut walk) {
            if info.index == index {
                return Some(info);
            }
        }
        None
    }

    /// Every layer with its shapes and name, in order.
    pub fn iter(&self) -> impl Iterator<Item = LayerInfo> + '_ {
        let mut walk = self.start();
        core::iter::from_fn(move || self.advance(&mut walk)?.ok())
    }

    /// Trainable parameters of the whole network.
    pub fn parameters(&self) -> usize {
        self.iter().map(|info| info.parameters()).sum()
    }

    /// Multiply-accumulates per image (see [`LayerInfo::macs`]).
    pub fn macs(&self) -> usize {
        self.iter().map(|info| info.macs()).sum()
    }

    pub(crate) const fn start(&self) -> Walk {
        Walk {
            index: 0,
            shape: self.input,
            flattened: false,
            block: None,
            records: 0,
            counts: [0; KINDS],
        }
    }

    /// The shape `layer` produces from `input`, checking the layer on its own
    /// and against the walk so far (which it updates: flattened, the open
    /// residual block). The shortcut shape comes second for residual layers.
    const fn shape_after(
        &self,
        walk: &mut Walk,
        layer: Layer,
        input: Shape,
    ) -> Result<(Shape, Option<Shape>), Problem> {
        let map_layer = matches!(
            layer,
            Layer::Conv(_)
                | Layer::MaxPool
                | Layer::Depthwise(_)
                | Layer::Pool(_)
                | Layer::GlobalAveragePool
                | Layer::Residual(_)
        );
        if map_layer && walk.flattened {
            return Err(Problem::MapLayerAfterFlatten);
        }
        if walk.block.is_some() && matches!(layer, Layer::Flatten | Layer::Dense(_)) {
            return Err(Problem::VectorInResidual);
        }
        if matches!(layer, Layer::Softmax) && self.len != walk.index + 1 {
            return Err(Problem::SoftmaxNotLast);
        }
        let output = match layer {
            Layer::Conv(conv) => {
                if let Some(problem) = check_conv_window(&conv.window) {
                    return Err(problem);
                }
                if conv.filters == 0 || conv.filters as usize > MAX_FILTERS {
                    return Err(Problem::Filters {
                        filters: conv.filters as usize,
                    });
                }
                match window_output(&conv.window, input, conv.filters as usize) {
                    Ok(output) => output,
                    Err(problem) => return Err(problem),
                }
            }
            Layer::Depthwise(depthwise) => {
                if let Some(problem) = check_conv_window(&depthwise.window) {
                    return Err(problem);
                }
                let multiplier = depthwise.multiplier as usize;
                if multiplier == 0 || multiplier > MAX_DEPTH_MULTIPLIER {
                    return Err(Problem::DepthMultiplier { multiplier });
                }
                match window_output(&depthwise.window, input, input.channels * multiplier) {
                    Ok(output) => output,
                    Err(problem) => return Err(problem),
                }
            }
            Layer::MaxPool => {
                if input.height < 2 || input.width < 2 {
                    return Err(Problem::PoolTooSmall { input });
                }
                Shape::new(input.height / 2, input.width / 2, input.channels)
            }
            Layer::Pool(pool) => {
                let window = pool.window;
                let (height, width) = (window.height as usize, window.width as usize);
                if height == 0 || width == 0 {
                    return Err(Problem::PoolWindow { height, width });
                }
                if window.stride_height == 0 || window.stride_width == 0 {
                    return Err(Problem::Stride {
                        height: window.stride_height as usize,
                        width: window.stride_width as usize,
                    });
                }
                match window_output(&window, input, input.channels) {
                    Ok(output) => output,
                    Err(problem) => return Err(problem),
                }
            }
            Layer::GlobalAveragePool => Shape::vector(input.channels),
            Layer::Dropout(thousandths) => {
                if thousandths == 0 || thousandths > 999 {
                    return Err(Problem::DropoutRate { thousandths });
                }
                input
            }
            Layer::Flatten => {
                if walk.flattened {
                    return Err(Problem::FlattenTwice);
                }
                walk.flattened = true;
                Shape::vector(input.values())
            }
            Layer::Dense(dense) => {
                if !walk.flattened && !input.is_vector() {
                    return Err(Problem::DenseWithoutFlatten);
                }
                if dense.units == 0 || dense.units as usize > MAX_UNITS {
                    return Err(Problem::Units {
                        units: dense.units as usize,
                    });
                }
                walk.flattened = true;
                Shape::vector(dense.units as usize)
            }
            Layer::Residual(shortcut) => {
                if walk.block.is_some() {
                    return Err(Problem::NestedResidual);
                }
                if let Shortcut::Projection { filters, stride } = shortcut {
                    if filters == 0 || filters as usize > MAX_FILTERS {
                        return Err(Problem::Filters {
                            filters: filters as usize,
                        });
                    }
                    if stride == 0 || stride as usize > MAX_CONV_STRIDE {
                        return Err(Problem::Stride {
                            height: stride as usize,
                            width: stride as usize,
                        });
                    }
                }
                let kept = shortcut.output(input);
                walk.block = Some(OpenBlock {
                    start: walk.index,
                    shortcut: kept,
                });
                return Ok((input, Some(kept)));
            }
            Layer::Add(_) => {
                let Some(block) = walk.block else {
                    return Err(Problem::AddWithoutResidual);
                };
                if block.start + 1 == walk.index {
                    return Err(Problem::EmptyResidual);
                }
                let body = input;
                let shortcut = block.shortcut;
                if body.height != shortcut.height
                    || body.width != shortcut.width
                    || body.channels != shortcut.channels
                {
                    return Err(Problem::ResidualShapes { body, shortcut });
                }
                walk.block = None;
                return Ok((shortcut, Some(shortcut)));
            }
            Layer::Softmax => {
                if !input.is_vector() {
                    return Err(Problem::SoftmaxOnMap);
                }
                if input.channels > MAX_SOFTMAX_VALUES {
                    return Err(Problem::SoftmaxTooWide {
                        values: input.channels,
                    });
                }
                input
            }
        };
        Ok((output, None))
    }

    /// Checks the walk's next layer against the layers before it and moves
    /// past it; `None` past the last layer.
    pub(crate) const fn advance(&self, walk: &mut Walk) -> Option<Result<LayerInfo, ArchError>> {
        let index = walk.index;
        let layer = match self.layers().split_at_checked(index) {
            Some((_, [layer, ..])) => *layer,
            _ => return None,
        };
        let name = walk.name_of(layer.kind());
        let input = walk.shape;
        let (output, shortcut) = match self.shape_after(walk, layer, input) {
            Ok(shapes) => shapes,
            Err(problem) => return Some(Err(fail(index, name, problem))),
        };
        let largest = match shortcut {
            Some(shortcut) if shortcut.values() > output.values() => shortcut,
            _ => output,
        };
        if largest.values() > MAX_TENSOR_VALUES {
            return Some(Err(fail(
                index,
                name,
                Problem::TensorTooLarge { output: largest },
            )));
        }
        let record = if layer.has_record() {
            walk.records += 1;
            Some(walk.records - 1)
        } else {
            None
        };
        let info = LayerInfo {
            index,
            layer,
            name,
            record,
            input,
            output,
        };
        if info.fan_in() > MAX_FAN_IN {
            return Some(Err(fail(
                index,
                name,
                Problem::FanInTooLarge {
                    fan_in: info.fan_in(),
                },
            )));
        }
        walk.shape = output;
        walk.index += 1;
        Some(Ok(info))
    }
}

impl Default for Architecture {
    fn default() -> Self {
        Architecture::REFERENCE
    }
}

/// Evaluated while compiling: the reference network keeps its known size.
const _: () = {
    assert!(Architecture::REFERENCE.classes() == 10);
    assert!(Architecture::REFERENCE.weighted_layers() == 7);
    assert!(Architecture::REFERENCE.record_layers() == 7);
    assert!(!Architecture::REFERENCE.needs_version_3());
    // Descriptions are copied by value on a microcontroller's stack.
    assert!(core::mem::size_of::<Layer>() <= 8);
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text;

    #[test]
    fn reference_has_the_tutorial_shapes_and_sizes() {
        let reference = Architecture::REFERENCE;
        assert_eq!(reference.parameters(), 675_370);
        assert_eq!(reference.macs(), 29_658_432);
        let shapes: std::vec::Vec<_> = reference
            .iter()
            .map(|info| (std::format!("{}", info.name), info.output))
            .collect();
        assert_eq!(shapes[0], ("conv1".into(), Shape::new(28, 28, 64)));
        assert_eq!(shapes[1], ("pool1".into(), Shape::new(14, 14, 64)));
        assert_eq!(shapes[7], ("pool3".into(), Shape::new(3, 3, 256)));
        assert_eq!(shapes[9], ("flatten".into(), Shape::new(1, 1, 2304)));
        assert_eq!(shapes[13], ("dense4".into(), Shape::new(1, 1, 10)));
        let records: std::vec::Vec<_> = reference.iter().filter_map(|i| i.record).collect();
        assert_eq!(records, [0, 1, 2, 3, 4, 5, 6]);
    }

    fn conv(kernel: u8, padding: Padding, filters: u16) -> Layer {
        Layer::Conv(Conv::square(kernel, padding, filters, Activation::Relu))
    }

    fn logits(units: u16) -> Layer {
        Layer::Dense(Dense {
            units,
            activation: Activation::None,
        })
    }

    fn problem(input: Shape, layers: &[Layer]) -> (Option<usize>, Problem) {
        let error = Architecture::new(input, layers).unwrap_err();
        (error.index, error.problem)
    }

    fn parse(text: &str) -> Architecture {
        text::parse(text, Shape::new(28, 28, 1)).unwrap()
    }

    fn parse_problem(text: &str) -> (Option<usize>, Problem) {
        match text::parse(text, Shape::new(28, 28, 1))
            .unwrap_err()
            .problem
        {
            text::TextProblem::Architecture(error) => (error.index, error.problem),
            other => panic!("{text}: not an architecture error: {other:?}"),
        }
    }

    #[test]
    fn rejections_name_the_layer_and_the_reason() {
        let mnist = Shape::new(28, 28, 1);
        assert_eq!(
            problem(mnist, &[logits(10)]),
            (Some(0), Problem::DenseWithoutFlatten)
        );
        let one = Shape::new(1, 1, 1);
        assert_eq!(
            problem(one, &[Layer::MaxPool, Layer::Flatten, logits(2)]),
            (Some(0), Problem::PoolTooSmall { input: one })
        );
        assert_eq!(
            problem(mnist, &[Layer::Flatten, Layer::MaxPool, logits(2)]),
            (Some(1), Problem::MapLayerAfterFlatten)
        );
        assert_eq!(
            problem(
                mnist,
                &[conv(17, Padding::Same, 8), Layer::Flatten, logits(2)]
            ),
            (
                Some(0),
                Problem::KernelSide {
                    height: 17,
                    width: 17
                }
            )
        );
        assert_eq!(
            problem(
                Shape::new(4, 4, 1),
                &[conv(5, Padding::Valid, 8), Layer::Flatten, logits(2)]
            ),
            (
                Some(0),
                Problem::KernelLargerThanInput {
                    height: 5,
                    width: 5,
                    input: Shape::new(4, 4, 1)
                }
            )
        );
        assert_eq!(
            problem(mnist, &[Layer::Flatten, Layer::Flatten, logits(2)]),
            (Some(1), Problem::FlattenTwice)
        );
        assert_eq!(
            problem(mnist, &[Layer::Flatten, logits(1)]),
            (Some(1), Problem::TooFewClasses { classes: 1 })
        );
        assert_eq!(
            problem(mnist, &[Layer::Flatten, logits(10), Layer::Dropout(500)]),
            (Some(2), Problem::LastIsDropout)
        );
        assert_eq!(
            problem(mnist, &[Layer::Dropout(0), Layer::Flatten, logits(10)]),
            (Some(0), Problem::DropoutRate { thousandths: 0 })
        );
        assert_eq!(
            problem(
                mnist,
                &[
                    Layer::Flatten,
                    Layer::Dense(Dense {
                        units: 10,
                        activation: Activation::Relu
                    })
                ]
            ),
            (Some(1), Problem::LogitsActivation)
        );
        assert_eq!(
            problem(Shape::new(28, 28, 0), &[Layer::Flatten, logits(10)]),
            (None, Problem::InputChannels { channels: 0 })
        );
        assert_eq!(
            problem(Shape::new(300, 28, 1), &[Layer::Flatten, logits(10)]),
            (
                None,
                Problem::InputSide {
                    height: 300,
                    width: 28
                }
            )
        );
        assert_eq!(problem(mnist, &[]), (None, Problem::NoLayers));
        let many = [Layer::Dropout(100); MAX_LAYERS + 1];
        assert_eq!(
            problem(mnist, &many),
            (
                None,
                Problem::TooManyLayers {
                    count: MAX_LAYERS + 1
                }
            )
        );
        // 256x256x1 flattened: 65,536 inputs is the limit, 256x256x3 is over it.
        assert!(Architecture::new(Shape::new(256, 256, 1), &[Layer::Flatten, logits(2)]).is_ok());
        assert_eq!(
            problem(Shape::new(256, 256, 3), &[Layer::Flatten, logits(2)]),
            (Some(1), Problem::FanInTooLarge { fan_in: 196_608 })
        );
        assert_eq!(
            problem(
                Shape::new(256, 256, 3),
                &[conv(3, Padding::Same, 1024), Layer::Flatten, logits(2)]
            ),
            (
                Some(0),
                Problem::TensorTooLarge {
                    output: Shape::new(256, 256, 1024)
                }
            )
        );
    }

    #[test]
    fn new_layers_are_checked_where_they_stand() {
        assert_eq!(
            parse_problem("conv3x3:8:s3 flatten dense:2"),
            (
                Some(0),
                Problem::Stride {
                    height: 3,
                    width: 3
                }
            )
        );
        assert_eq!(
            parse_problem("dw3x3:m9 flatten dense:2"),
            (Some(0), Problem::DepthMultiplier { multiplier: 9 })
        );
        assert_eq!(
            parse_problem("residual conv3x3:8 add flatten dense:2"),
            (
                Some(2),
                Problem::ResidualShapes {
                    body: Shape::new(28, 28, 8),
                    shortcut: Shape::new(28, 28, 1)
                }
            )
        );
        assert_eq!(
            parse_problem("residual residual conv3x3:1 add add flatten dense:2"),
            (Some(1), Problem::NestedResidual)
        );
        assert_eq!(
            parse_problem("conv3x3:8 add flatten dense:2"),
            (Some(1), Problem::AddWithoutResidual)
        );
        assert_eq!(
            parse_problem("residual add flatten dense:2"),
            (Some(1), Problem::EmptyResidual)
        );
        assert_eq!(
            parse_problem("residual conv3x3:1 flatten dense:2"),
            (Some(2), Problem::VectorInResidual)
        );
        assert_eq!(
            parse_problem("conv3x3:4 residual conv3x3:4 flatten"),
            (Some(3), Problem::VectorInResidual)
        );
        assert_eq!(
            parse_problem("flatten dense:4 softmax dense:2"),
            (Some(2), Problem::SoftmaxNotLast)
        );
        assert_eq!(
            parse_problem("conv3x3:4 softmax"),
            (Some(1), Problem::SoftmaxOnMap)
        );
        assert_eq!(
            parse_problem("flatten dense:512 softmax"),
            (Some(2), Problem::SoftmaxTooWide { values: 512 })
        );
        assert_eq!(
            parse_problem("gap conv3x3:4"),
            (Some(1), Problem::LastNotDense)
        );
        assert_eq!(
            parse_problem("avgpool29x1 flatten dense:2"),
            (
                Some(0),
                Problem::KernelLargerThanInput {
                    height: 29,
                    width: 1,
                    input: Shape::new(28, 28, 1)
                }
            )
        );
        // An unclosed block is named by its start.
        assert_eq!(
            parse_problem("conv3x3:4 residual conv3x3:4 output:values"),
            (Some(1), Problem::UnclosedResidual)
        );
    }

    #[test]
    fn errors_read_as_sentences() {
        let error = Architecture::new(
            Shape::new(1, 1, 1),
            &[Layer::MaxPool, Layer::Flatten, logits(2)],
        )
        .unwrap_err();
        assert_eq!(
            std::format!("{error}"),
            "layer 1 (pool1): a 2x2 max-pool needs a map of at least 2x2, this one gets 1x1x1"
        );
    }

    #[test]
    fn valid_convolutions_shrink_the_map_and_pools_round_down() {
        let architecture = Architecture::new(
            Shape::new(32, 32, 3),
            &[
                conv(5, Padding::Valid, 8),
                Layer::MaxPool,
                conv(1, Padding::Same, 4),
                Layer::Flatten,
                logits(20),
            ],
        )
        .unwrap();
        let outputs: std::vec::Vec<Shape> = architecture.iter().map(|i| i.output).collect();
        assert_eq!(
            outputs,
            [
                Shape::new(28, 28, 8),
                Shape::new(14, 14, 8),
                Shape::new(14, 14, 4),
                Shape::new(1, 1, 784),
                Shape::new(1, 1, 20)
            ]
        );
        assert_eq!(architecture.classes(), 20);
        assert_eq!(architecture.layer(0).unwrap().macs(), 28 * 28 * 8 * 75);
    }

    #[test]
    fn tensorflow_padding_and_strides() {
        let window = |h, w, s, padding| Window {
            height: h,
            width: w,
            stride_height: s,
            stride_width: s,
            padding,
        };
        // The keyword network's first layer: 49x10, 10x4 stride 2 'same'.
        let kws = window(10, 4, 2, Padding::Same);
        let input = Shape::new(49, 10, 1);
        assert_eq!(kws.output(input), Some((25, 5)));
        // (25 - 1) * 2 + 10 - 49 = 9 rows: 4 above, 5 below; (5 - 1) * 2 + 4 - 10 = 2 columns.
        assert_eq!(kws.padding_before(input), (4, 1));
        let mobilenet = window(3, 3, 2, Padding::Same);
        assert_eq!(mobilenet.output(Shape::new(96, 96, 3)), Some((48, 48)));
        assert_eq!(mobilenet.padding_before(Shape::new(96, 96, 3)), (0, 0));
        assert_eq!(mobilenet.padding_before(Shape::new(95, 95, 3)), (1, 1));
        let valid = window(3, 3, 2, Padding::Valid);
        assert_eq!(valid.output(Shape::new(7, 8, 1)), Some((3, 3)));
        assert_eq!(valid.output(Shape::new(2, 8, 1)), None);
        // 'same' odd kernels with stride 1 pad (K - 1) / 2 on every side.
        for side in [1u8, 3, 5, 7] {
            let same = Window::square(side, Padding::Same);
            let pad = usize::from(side - 1) / 2;
            assert_eq!(same.padding_before(Shape::new(6, 9, 1)), (pad, pad));
        }
    }

    #[test]
    fn the_mlperf_tiny_networks_have_their_published_sizes() {
        let kws = parse(
            "input:49x10x1 conv10x4:64:s2 dw3x3 conv1x1:64 dw3x3 conv1x1:64 dw3x3 conv1x1:64 \
             dw3x3 conv1x1:64 avgpool25x5 flatten dense:12 softmax",
        );
        assert_eq!((kws.macs(), kws.parameters()), (2_656_768, 22_604));
        assert_eq!(kws.output(), Shape::vector(12));
        let mut vww = std::string::String::from("input:96x96x3 conv3x3:8:s2");
        for (filters, stride) in [
            (16, 1),
            (32, 2),
            (32, 1),
            (64, 2),
            (64, 1),
            (128, 2),
            (128, 1),
            (128, 1),
            (128, 1),
            (128, 1),
            (128, 1),
            (256, 2),
            (256, 1),
        ] {
            vww += &std::format!(" dw3x3:s{stride} conv1x1:{filters}");
        }
        vww += " avgpool3x3 flatten dense:2 softmax";
        let vww = parse(&vww);
        assert_eq!((vww.macs(), vww.parameters()), (7_489_664, 210_850));
        let resnet = parse(
            "input:32x32x3 conv3x3:16 \
             residual conv3x3:16 conv3x3:16:linear add \
             residual:32:s2 conv3x3:32:s2 conv3x3:32:linear add \
             residual:64:s2 conv3x3:64:s2 conv3x3:64:linear add \
             avgpool8x8 flatten dense:10 softmax",
        );
        assert_eq!((resnet.macs(), resnet.parameters()), (12_501_632, 77_706));
        let shortcut = resnet.layer(5).unwrap();
        assert_eq!(shortcut.shortcut(), Some(Shape::new(16, 16, 32)));
        assert_eq!(shortcut.output, Shape::new(32, 32, 16));
        let autoencoder = parse(
            "input:640 dense:128 dense:128 dense:128 dense:128 dense:8 dense:128 dense:128 \
             dense:128 dense:128 dense:640:linear output:values",
        );
        assert_eq!(autoencoder.macs(), 264_192);
        assert_eq!(autoencoder.output_kind(), OutputKind::Values);
        assert_eq!(autoencoder.output(), Shape::vector(640));
        for network in [kws, vww, resnet, autoencoder] {
            assert!(network.needs_version_3());
        }
    }
}
