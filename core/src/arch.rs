//! The network description: an input shape and a sequence of layers, the one
//! source of truth for every shape in the host, the firmware and the tests.
//!
//! ```text
//! input  H x W x C          (C = 1 grey or 3 colour channels, u8 pixels)
//! conv   K x K, F filters   (K in {1, 3, 5}, stride 1, 'same' or 'valid', ReLU or none)
//! pool   2 x 2, stride 2    (an odd side drops its last row or column: 7 -> 3)
//! drop   rate               (training only; inference ignores it)
//! flatten                   (height, width, channel order)
//! dense  U units            (ReLU or none; the last one gives the logits)
//! ```
//!
//! An [`Architecture`] can only be built valid ([`Architecture::new`] checks
//! every rule and names the offending layer), and everything about it is a
//! `const fn`: the firmware computes its scratch size from the model bytes it
//! embeds while compiling ([`crate::plan`]). The text form people write
//! (`conv3x3:64 pool drop:0.5 ... dense:10`) is in [`crate::text`].
//!
//! Activations are channels-last (NHWC): a tensor of height `H`, width `W`
//! and `C` channels is stored as `[[[T; C]; W]; H]`.

use core::fmt;

/// Most layers a description may hold.
pub const MAX_LAYERS: usize = 32;
/// Largest input height or width, in pixels.
pub const MAX_SIDE: usize = 256;
/// Most filters of a convolution.
pub const MAX_FILTERS: usize = 1024;
/// Most units of a dense layer (and so most classes).
pub const MAX_UNITS: usize = 4096;
/// Fewest classes: the last dense layer's units.
pub const MIN_CLASSES: usize = 2;
/// Most values in one activation tensor.
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

/// What follows a convolution or dense layer's sum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Activation {
    /// The sum itself (Keras's `linear`).
    None,
    /// `max(0, x)`.
    Relu,
}

/// How a convolution treats the border.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Padding {
    /// Zero padding of `(K - 1) / 2` on every side: the output has the input's
    /// height and width.
    Same,
    /// No padding: the output loses `K - 1` rows and columns.
    Valid,
}

/// A 2-D convolution with stride 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Conv {
    /// Kernel side `K` (the kernel is `K x K`): 1, 3 or 5.
    pub kernel: u8,
    /// Border handling.
    pub padding: Padding,
    /// Output channels, 1 to [`MAX_FILTERS`].
    pub filters: u16,
    /// Activation after the sum.
    pub activation: Activation,
}

impl Conv {
    /// The kernel side `K` as a count.
    pub const fn side(&self) -> usize {
        self.kernel as usize
    }

    /// Zero rows and columns added on each side.
    pub const fn pad(&self) -> usize {
        match self.padding {
            Padding::Same => self.side().saturating_sub(1) / 2,
            Padding::Valid => 0,
        }
    }

    /// Output shape for `input`, `None` when the kernel is larger than the
    /// (padded) input.
    pub const fn output(&self, input: Shape) -> Option<Shape> {
        let pad = self.pad();
        let (height, width) = (input.height + 2 * pad, input.width + 2 * pad);
        let side = self.side();
        if height < side || width < side {
            return None;
        }
        Some(Shape::new(
            height - side + 1,
            width - side + 1,
            self.filters as usize,
        ))
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
}

/// The kinds of layers, for names and messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum LayerKind {
    /// [`Layer::Conv`].
    Conv,
    /// [`Layer::MaxPool`].
    Pool,
    /// [`Layer::Dropout`].
    Dropout,
    /// [`Layer::Flatten`].
    Flatten,
    /// [`Layer::Dense`].
    Dense,
}

impl LayerKind {
    /// The word that starts this kind's names: `conv`, `pool`, `drop`,
    /// `flatten`, `dense`.
    pub const fn word(self) -> &'static str {
        match self {
            LayerKind::Conv => "conv",
            LayerKind::Pool => "pool",
            LayerKind::Dropout => "drop",
            LayerKind::Flatten => "flatten",
            LayerKind::Dense => "dense",
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
        }
    }

    /// Whether the layer has weights (a convolution or a dense layer).
    pub const fn has_weights(&self) -> bool {
        matches!(self, Layer::Conv(_) | Layer::Dense(_))
    }
}

/// A layer's name: its kind and its 1-based number among the layers of that
/// kind, as in logs and messages (`conv1`, `pool2`, `dense4`; `flatten`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LayerName {
    /// Kind of layer.
    pub kind: LayerKind,
    /// 1-based number among the layers of this kind.
    pub number: u8,
}

impl fmt::Display for LayerName {
    /// `conv1`, `pool2`, ...; `flatten` alone (there is only one).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            LayerKind::Flatten => f.write_str("flatten"),
            _ => write!(f, "{}{}", self.kind.word(), self.number),
        }
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for LayerName {
    fn format(&self, f: defmt::Formatter<'_>) {
        match self.kind {
            LayerKind::Flatten => defmt::write!(f, "flatten"),
            _ => defmt::write!(f, "{=str}{=u8}", self.kind.word(), self.number),
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
    /// The input has neither 1 nor 3 channels.
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
    /// A kernel side other than 1, 3 or 5.
    KernelSide {
        /// Side given.
        kernel: usize,
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
    /// A 'valid' convolution whose kernel is larger than its input.
    KernelLargerThanInput {
        /// Kernel side.
        kernel: usize,
        /// Input shape.
        input: Shape,
    },
    /// A max-pool on a map smaller than 2x2.
    PoolTooSmall {
        /// Input shape.
        input: Shape,
    },
    /// A convolution or pool after `flatten`.
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
    /// The last layer is not a dense layer.
    LastNotDense,
    /// The last dense layer has an activation (it gives the logits).
    LogitsActivation,
    /// The last dense layer has fewer than [`MIN_CLASSES`] units.
    TooFewClasses {
        /// Units of the last layer.
        classes: usize,
    },
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
                "input with {channels} channels: 1 (grey) or 3 (colour) are supported"
            ),
            Problem::NoLayers => write!(f, "the description has no layers"),
            Problem::TooManyLayers { count } => {
                write!(f, "{count} layers, more than the {MAX_LAYERS} supported")
            }
            Problem::KernelSide { kernel } => write!(
                f,
                "a {kernel}x{kernel} kernel: 1x1, 3x3 and 5x5 are supported"
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
            Problem::KernelLargerThanInput { kernel, input } => write!(
                f,
                "a {kernel}x{kernel} 'valid' convolution needs an input of at least \
                 {kernel}x{kernel}, this one gets {input}"
            ),
            Problem::PoolTooSmall { input } => write!(
                f,
                "a 2x2 max-pool needs a map of at least 2x2, this one gets {input}"
            ),
            Problem::MapLayerAfterFlatten => write!(
                f,
                "convolutions and pools work on maps, but the map was already flattened"
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
            Problem::LastNotDense => write!(
                f,
                "the last layer must be a dense layer: it gives the logits of the classes"
            ),
            Problem::LogitsActivation => write!(
                f,
                "the last dense layer gives the logits and has no activation"
            ),
            Problem::TooFewClasses { classes } => write!(
                f,
                "the last dense layer gives {classes} classes, at least {MIN_CLASSES} are needed"
            ),
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

/// A valid network description: an input shape and 1 to [`MAX_LAYERS`]
/// layers. Only [`Architecture::new`] builds one, so every value of this type
/// has passed validation.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Architecture {
    input: Shape,
    layers: [Layer; MAX_LAYERS],
    len: usize,
}

impl fmt::Debug for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Architecture")
            .field("input", &self.input)
            .field("layers", &self.layers())
            .finish()
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for Architecture {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "Architecture {{ input: {}, layers: {} }}",
            self.input,
            self.layers()
        );
    }
}

/// Where a walk over a description stands: the next layer's index, the shape
/// so far, and how many layers of each kind it has passed (for names and
/// record positions). Copy it to look ahead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Walk {
    index: usize,
    shape: Shape,
    flattened: bool,
    counts: [u8; 5],
}

impl Walk {
    const fn name_of(&mut self, kind: LayerKind) -> LayerName {
        let slot = match kind {
            LayerKind::Conv => &mut self.counts[0],
            LayerKind::Pool => &mut self.counts[1],
            LayerKind::Dropout => &mut self.counts[2],
            LayerKind::Flatten => &mut self.counts[3],
            LayerKind::Dense => &mut self.counts[4],
        };
        *slot += 1;
        LayerName {
            kind,
            number: *slot,
        }
    }

    /// Layers with weights passed so far.
    const fn weighted_so_far(&self) -> usize {
        self.counts[0] as usize + self.counts[4] as usize
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
    /// 0-based position among the layers with weights (conv and dense), which
    /// is also its record's position in a model file.
    pub weighted: Option<usize>,
    /// Shape it reads.
    pub input: Shape,
    /// Shape it writes.
    pub output: Shape,
}

impl LayerInfo {
    /// Inputs one output sees: `K x K x input channels` for a convolution, the
    /// input length for a dense layer, 0 otherwise.
    pub const fn fan_in(&self) -> usize {
        match self.layer {
            Layer::Conv(conv) => conv.side() * conv.side() * self.input.channels,
            Layer::Dense(_) => self.input.values(),
            _ => 0,
        }
    }

    /// Outputs with their own weights and bias: filters or units, 0 otherwise.
    pub const fn outputs(&self) -> usize {
        match self.layer {
            Layer::Conv(conv) => conv.filters as usize,
            Layer::Dense(dense) => dense.units as usize,
            _ => 0,
        }
    }

    /// Number of weights (`outputs x fan_in`).
    pub const fn weights(&self) -> usize {
        self.outputs() * self.fan_in()
    }

    /// Trainable parameters: weights and biases.
    pub const fn parameters(&self) -> usize {
        self.weights() + self.outputs()
    }

    /// Multiply-accumulates per image, counted as TensorFlow Lite counts them
    /// (every convolution output, including rows and columns that a following
    /// pool drops).
    pub const fn macs(&self) -> usize {
        match self.layer {
            Layer::Conv(_) => self.output.height * self.output.width * self.weights(),
            Layer::Dense(_) => self.weights(),
            _ => 0,
        }
    }

    /// The activation after the sum (`None` for layers without weights).
    pub const fn activation(&self) -> Activation {
        match self.layer {
            Layer::Conv(conv) => conv.activation,
            Layer::Dense(dense) => dense.activation,
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

impl Architecture {
    /// Validates `input` and `layers` as a description.
    pub const fn new(input: Shape, layers: &[Layer]) -> Result<Self, ArchError> {
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
        if input.channels != 1 && input.channels != 3 {
            return Err(fail_whole(Problem::InputChannels {
                channels: input.channels,
            }));
        }
        if layers.is_empty() {
            return Err(fail_whole(Problem::NoLayers));
        }
        if layers.len() > MAX_LAYERS {
            return Err(fail_whole(Problem::TooManyLayers {
                count: layers.len(),
            }));
        }
        let mut stored = [Layer::Flatten; MAX_LAYERS];
        let mut slots: &mut [Layer] = &mut stored;
        let mut rest = layers;
        while let ([slot, slots_tail @ ..], [layer, rest_tail @ ..]) = (slots, rest) {
            *slot = *layer;
            slots = slots_tail;
            rest = rest_tail;
        }
        let architecture = Architecture {
            input,
            layers: stored,
            len: layers.len(),
        };
        // Walk every layer once: each check needs the shape the layers before
        // it produced.
        let mut walk = architecture.start();
        let mut last = None;
        while let Some(step) = architecture.advance(&mut walk) {
            match step {
                Ok(info) => last = Some(info),
                Err(error) => return Err(error),
            }
        }
        match last {
            Some(LayerInfo {
                index,
                name,
                layer: Layer::Dense(dense),
                ..
            }) => {
                if !matches!(dense.activation, Activation::None) {
                    return Err(fail(index, name, Problem::LogitsActivation));
                }
                if (dense.units as usize) < MIN_CLASSES {
                    return Err(fail(
                        index,
                        name,
                        Problem::TooFewClasses {
                            classes: dense.units as usize,
                        },
                    ));
                }
                Ok(architecture)
            }
            Some(info) => Err(fail(info.index, info.name, Problem::LastNotDense)),
            None => Err(fail_whole(Problem::NoLayers)),
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
            Layer::Conv(Conv {
                kernel: 3,
                padding: Padding::Same,
                filters,
                activation: Activation::Relu,
            })
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

    /// The output shape: `1 x 1 x classes`.
    pub const fn output(&self) -> Shape {
        let mut walk = self.start();
        while let Some(Ok(_)) = self.advance(&mut walk) {}
        walk.shape
    }

    /// Number of classes: the last dense layer's units.
    pub const fn classes(&self) -> usize {
        self.output().channels
    }

    /// Number of layers with weights (convolutions and dense layers), which
    /// is the number of layer records in a model file.
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
            counts: [0; 5],
        }
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
        let output = match layer {
            Layer::Conv(conv) => {
                if walk.flattened {
                    return Some(Err(fail(index, name, Problem::MapLayerAfterFlatten)));
                }
                if !matches!(conv.kernel, 1 | 3 | 5) {
                    return Some(Err(fail(
                        index,
                        name,
                        Problem::KernelSide {
                            kernel: conv.side(),
                        },
                    )));
                }
                if conv.filters == 0 || conv.filters as usize > MAX_FILTERS {
                    return Some(Err(fail(
                        index,
                        name,
                        Problem::Filters {
                            filters: conv.filters as usize,
                        },
                    )));
                }
                match conv.output(input) {
                    Some(output) => output,
                    None => {
                        return Some(Err(fail(
                            index,
                            name,
                            Problem::KernelLargerThanInput {
                                kernel: conv.side(),
                                input,
                            },
                        )));
                    }
                }
            }
            Layer::MaxPool => {
                if walk.flattened {
                    return Some(Err(fail(index, name, Problem::MapLayerAfterFlatten)));
                }
                if input.height < 2 || input.width < 2 {
                    return Some(Err(fail(index, name, Problem::PoolTooSmall { input })));
                }
                Shape::new(input.height / 2, input.width / 2, input.channels)
            }
            Layer::Dropout(thousandths) => {
                if thousandths == 0 || thousandths > 999 {
                    return Some(Err(fail(index, name, Problem::DropoutRate { thousandths })));
                }
                input
            }
            Layer::Flatten => {
                if walk.flattened {
                    return Some(Err(fail(index, name, Problem::FlattenTwice)));
                }
                walk.flattened = true;
                Shape::new(1, 1, input.values())
            }
            Layer::Dense(dense) => {
                if !walk.flattened {
                    return Some(Err(fail(index, name, Problem::DenseWithoutFlatten)));
                }
                if dense.units == 0 || dense.units as usize > MAX_UNITS {
                    return Some(Err(fail(
                        index,
                        name,
                        Problem::Units {
                            units: dense.units as usize,
                        },
                    )));
                }
                Shape::new(1, 1, dense.units as usize)
            }
        };
        if output.values() > MAX_TENSOR_VALUES {
            return Some(Err(fail(index, name, Problem::TensorTooLarge { output })));
        }
        // The name was counted already: the layers before this one.
        let weighted = if layer.has_weights() {
            Some(walk.weighted_so_far() - 1)
        } else {
            None
        };
        let info = LayerInfo {
            index,
            layer,
            name,
            weighted,
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
};

#[cfg(test)]
mod tests {
    use super::*;

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
        let weighted: std::vec::Vec<_> = reference.iter().filter_map(|i| i.weighted).collect();
        assert_eq!(weighted, [0, 1, 2, 3, 4, 5, 6]);
    }

    fn conv(kernel: u8, padding: Padding, filters: u16) -> Layer {
        Layer::Conv(Conv {
            kernel,
            padding,
            filters,
            activation: Activation::Relu,
        })
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

    #[test]
    fn rejections_name_the_layer_and_the_reason() {
        let mnist = Shape::new(28, 28, 1);
        assert_eq!(
            problem(
                mnist,
                &[Layer::Dense(Dense {
                    units: 10,
                    activation: Activation::None
                })]
            ),
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
                &[conv(7, Padding::Same, 8), Layer::Flatten, logits(2)]
            ),
            (Some(0), Problem::KernelSide { kernel: 7 })
        );
        assert_eq!(
            problem(
                Shape::new(4, 4, 1),
                &[conv(5, Padding::Valid, 8), Layer::Flatten, logits(2)]
            ),
            (
                Some(0),
                Problem::KernelLargerThanInput {
                    kernel: 5,
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
            (Some(2), Problem::LastNotDense)
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
            problem(Shape::new(28, 28, 2), &[Layer::Flatten, logits(10)]),
            (None, Problem::InputChannels { channels: 2 })
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
            (None, Problem::TooManyLayers { count: 33 })
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
}
