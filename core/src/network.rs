//! Runs a whole network on one image, int8 or f32, in caller-provided
//! scratch memory laid out by [`crate::plan`].

use crate::arch::{Architecture, Shape};
use crate::error::Error;
use crate::format::{F32LayerRecord, F32Model, Int8LayerRecord, Int8Model};
#[cfg(tinycnn_arm_dsp)]
use crate::kernels::dsp;
use crate::kernels::int8::Backend;
use crate::kernels::{
    ConvGeometry, F32Kernels, Int8Kernels, argmax, f32 as kf32, int8 as ki8, max_pool2,
};
use crate::plan::{self, Operation, Step};

/// A classification: the class and the logits it was chosen from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prediction<'s, T> {
    /// The predicted class: the index of the largest logit (the lowest index
    /// on ties; for f32, NaN never wins).
    pub class: usize,
    /// The last layer's outputs before softmax, borrowed from the scratch.
    pub logits: &'s [T],
}

/// What an observer of an inference sees after each step.
#[derive(Clone, Copy, Debug)]
pub struct Observation<'o, T> {
    /// 0-based number of the step.
    pub index: usize,
    /// The step (its layer, operation and shapes).
    pub step: &'o Step,
    /// The kernels that ran it (f32 kernels are the portable ones).
    pub kernels: Backend,
    /// Its output (after its activation and fused pool), channels-last.
    pub output: &'o [T],
}

/// Scratch memory of `N` bytes for int8 inference, aligned for the Arm DSP
/// kernels' word accesses. Size it with [`crate::plan::int8_scratch_bytes`]
/// (a `const fn`) and make it a `static` on a microcontroller.
#[derive(Clone, Debug)]
#[repr(C, align(4))]
pub struct Scratch<const N: usize>([i8; N]);

impl<const N: usize> Scratch<N> {
    /// Zeroed scratch; `const`, so it can initialise a `static`.
    pub const fn new() -> Self {
        Scratch([0; N])
    }

    /// The bytes, for [`Int8Model::classify`].
    pub fn as_mut_slice(&mut self) -> &mut [i8] {
        &mut self.0
    }
}

impl<const N: usize> Default for Scratch<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// The input, output and work area of step `index` inside `arena`.
fn split<T>(
    arena: &mut [T],
    index: usize,
    input: usize,
    output: usize,
) -> Option<(&[T], &mut [T], &mut [T])> {
    let regions = plan::regions(index, input, output, arena.len());
    if regions.input < regions.output {
        let (low, high) = arena.split_at_mut(regions.output);
        let (input_area, work) = low.split_at_mut(regions.work.min(low.len()));
        Some((input_area.get(..input)?, high.get_mut(..output)?, work))
    } else {
        let (low, high) = arena.split_at_mut(regions.input);
        let (output_area, work) = low.split_at_mut(regions.work.min(low.len()));
        Some((high.get(..input)?, output_area.get_mut(..output)?, work))
    }
}

/// The part of `scratch` the model uses: from its first word boundary (the
/// DSP kernels need one for their work area), `needed` units long.
fn arena<T>(scratch: &mut [T], needed: usize) -> Result<&mut [T], Error> {
    let available = scratch.len();
    let skip = match scratch.as_ptr().align_offset(4) {
        skip if skip < 4 => skip,
        _ => 0,
    };
    scratch
        .get_mut(skip..)
        .and_then(|aligned| aligned.get_mut(..needed))
        .ok_or(Error::ScratchTooSmall {
            needed: needed + skip,
            available,
        })
}

/// Where the last step left its output: offset and length in the arena.
#[derive(Clone, Copy)]
struct Output {
    offset: usize,
    len: usize,
}

impl Output {
    fn of<T>(self, arena: &[T]) -> Option<&[T]> {
        arena.get(self.offset..self.offset + self.len)
    }
}

/// Runs every step of `architecture` over `arena`, whose start holds the
/// input: `run` computes one step from its input into its output, with the
/// arena's free part as its work area, and says which kernels ran it;
/// `observe` then sees the output. The int8 and f32 runners differ only in
/// `run`.
fn run_steps<'s, T: Copy + PartialOrd>(
    architecture: &Architecture,
    arena: &'s mut [T],
    mut run: impl FnMut(&Step, &[T], &mut [T], &mut [T]) -> Result<Backend, Error>,
    mut observe: impl FnMut(&Observation<'_, T>),
) -> Result<Prediction<'s, T>, Error> {
    let needed = arena.len();
    let mut last = Output {
        offset: 0,
        len: architecture.input().values(),
    };
    for (index, step) in plan::steps(architecture).enumerate() {
        let (input_len, output_len) = (step.input.values(), step.output.values());
        let (input, output, work) =
            split(arena, index, input_len, output_len).ok_or(Error::Malformed)?;
        let kernels = run(&step, input, output, work)?;
        observe(&Observation {
            index,
            step: &step,
            kernels,
            output,
        });
        last = Output {
            offset: plan::regions(index, input_len, output_len, needed).output,
            len: output_len,
        };
    }
    let arena: &'s [T] = arena;
    let logits = last.of(arena).ok_or(Error::Malformed)?;
    Ok(Prediction {
        class: argmax(logits),
        logits,
    })
}

fn int8_conv_layer<'r>(
    geometry: ConvGeometry,
    record: &Int8LayerRecord<'r>,
    input_zero_point: i8,
    step: &Step,
) -> Option<ki8::ConvLayer<'r>> {
    let requantization = ki8::Requantization::new(
        geometry.filters,
        record.bias,
        record.multipliers,
        record.shifts,
        input_zero_point,
        record.output.zero_point,
        step.layer.activation(),
    )?;
    ki8::ConvLayer::new(geometry, record.weights, requantization)
}

fn int8_dense_layer<'r>(
    record: &Int8LayerRecord<'r>,
    input_zero_point: i8,
    step: &Step,
) -> Option<ki8::DenseLayer<'r>> {
    let requantization = ki8::Requantization::new(
        step.output.values(),
        record.bias,
        record.multipliers,
        record.shifts,
        input_zero_point,
        record.output.zero_point,
        step.layer.activation(),
    )?;
    ki8::DenseLayer::new(step.input.values(), record.weights, requantization)
}

/// Who runs an int8 model's convolutions and dense layers.
enum Int8Runner<'k> {
    /// The core's own kernels.
    Builtin(Backend),
    /// The caller's.
    Caller(&'k mut dyn Int8Kernels),
}

impl Int8Model<'_> {
    /// Bytes of scratch [`classify`](Self::classify) needs (plus up to 3 if
    /// the slice does not start on a word boundary).
    pub fn scratch_bytes(&self) -> usize {
        plan::int8_scratch_bytes(self.architecture())
    }

    /// The input shape: images are `height x width x channels` bytes, 0-255,
    /// channels-last.
    pub fn input_shape(&self) -> Shape {
        self.architecture().input()
    }

    /// Classifies an image of 0-255 values (channels-last; 0 = background for
    /// MNIST), with the fastest kernels of this target ([`Backend::FASTEST`]).
    pub fn classify<'s>(
        &self,
        image: &[u8],
        scratch: &'s mut [i8],
    ) -> Result<Prediction<'s, i8>, Error> {
        self.classify_with(Backend::FASTEST, image, scratch, |_| {})
    }

    /// [`Int8Model::classify`], showing each step's output to `observe` as
    /// the step finishes: to time layers on a device, or to inspect
    /// activations.
    pub fn classify_observed<'s>(
        &self,
        image: &[u8],
        scratch: &'s mut [i8],
        observe: impl FnMut(&Observation<'_, i8>),
    ) -> Result<Prediction<'s, i8>, Error> {
        self.classify_with(Backend::FASTEST, image, scratch, observe)
    }

    /// [`Int8Model::classify_observed`] with the given kernels. Every backend
    /// computes the same bits; [`Backend::Portable`] is the reference.
    pub fn classify_with<'s>(
        &self,
        backend: Backend,
        image: &[u8],
        scratch: &'s mut [i8],
        observe: impl FnMut(&Observation<'_, i8>),
    ) -> Result<Prediction<'s, i8>, Error> {
        self.run(Int8Runner::Builtin(backend), image, scratch, observe)
    }

    /// [`Int8Model::classify_observed`] with convolutions and dense layers run by `kernels`
    /// (the host's SIMD builds of [`crate::kernels::wide`]); pools, argmax and the scratch layout
    /// stay the core's, and [`scratch_bytes`](Self::scratch_bytes) is enough.
    pub fn classify_with_kernels<'s>(
        &self,
        kernels: &mut dyn Int8Kernels,
        image: &[u8],
        scratch: &'s mut [i8],
        observe: impl FnMut(&Observation<'_, i8>),
    ) -> Result<Prediction<'s, i8>, Error> {
        self.run(Int8Runner::Caller(kernels), image, scratch, observe)
    }

    fn run<'s>(
        &self,
        mut runner: Int8Runner<'_>,
        image: &[u8],
        scratch: &'s mut [i8],
        observe: impl FnMut(&Observation<'_, i8>),
    ) -> Result<Prediction<'s, i8>, Error> {
        let architecture = self.architecture();
        let expected = architecture.input().values();
        if image.len() != expected {
            return Err(Error::InputLength {
                expected,
                found: image.len(),
            });
        }
        let backend = match runner {
            Int8Runner::Builtin(backend) => backend,
            Int8Runner::Caller(_) => Backend::Caller,
        };
        let needed = plan::int8_scratch_bytes_with(architecture, backend);
        let arena = arena(scratch, needed)?;
        // Scale 1/255 and zero point -128 make quantisation exact: p -> p - 128.
        for (slot, &pixel) in arena.iter_mut().zip(image) {
            *slot = (pixel ^ 0x80) as i8;
        }
        let mut records = self.layers();
        let mut zero_point = self.input_quantization().zero_point;
        let run = |step: &Step, input: &[i8], output: &mut [i8], _work: &mut [i8]| {
            #[cfg_attr(not(tinycnn_arm_dsp), allow(unused_mut))]
            let mut kernels = backend;
            let ran = match step.operation {
                Operation::Conv { conv, pooled } => {
                    let record = records.next().ok_or(Error::Malformed)?;
                    let geometry = ConvGeometry::new(&conv, step.input, pooled);
                    let layer = int8_conv_layer(geometry, &record, zero_point, step)
                        .ok_or(Error::Malformed)?;
                    zero_point = record.output.zero_point;
                    match &mut runner {
                        Int8Runner::Caller(caller) => caller.conv(input, &layer, output),
                        #[cfg(tinycnn_arm_dsp)]
                        Int8Runner::Builtin(Backend::ArmDsp) => {
                            dsp::conv(input, &layer, output, _work).map(|used| kernels = used)
                        }
                        Int8Runner::Builtin(_) => ki8::conv(input, &layer, output),
                    }
                }
                Operation::Pool => max_pool2(input, step.input, output),
                Operation::Dense => {
                    let record = records.next().ok_or(Error::Malformed)?;
                    let layer =
                        int8_dense_layer(&record, zero_point, step).ok_or(Error::Malformed)?;
                    zero_point = record.output.zero_point;
                    match &mut runner {
                        Int8Runner::Caller(caller) => caller.dense(input, &layer, output),
                        #[cfg(tinycnn_arm_dsp)]
                        Int8Runner::Builtin(Backend::ArmDsp) => {
                            dsp::dense(input, &layer, output, _work).map(|used| kernels = used)
                        }
                        Int8Runner::Builtin(_) => ki8::dense(input, &layer, output),
                    }
                }
            };
            ran.map(|()| kernels).ok_or(Error::Malformed)
        };
        run_steps(architecture, arena, run, observe)
    }

    /// Softmax probabilities of int8 logits (dequantised first), into
    /// `probabilities` (one per class).
    pub fn probabilities(&self, logits: &[i8], probabilities: &mut [f32]) {
        let quantization = self.logits_quantization();
        let used = probabilities.len().min(logits.len());
        let probabilities = probabilities.get_mut(..used).unwrap_or(&mut []);
        for (p, &q) in probabilities.iter_mut().zip(logits) {
            *p = quantization.dequantize(q);
        }
        kf32::softmax(probabilities);
    }
}

fn f32_conv_layer<'r>(
    geometry: ConvGeometry,
    record: &F32LayerRecord<'r>,
    step: &Step,
) -> Option<kf32::ConvLayer<'r>> {
    kf32::ConvLayer::new(
        geometry,
        record.weights,
        record.bias,
        step.layer.activation(),
    )
}

impl F32Model<'_> {
    /// `f32` values of scratch [`classify`](Self::classify) needs.
    pub fn scratch_len(&self) -> usize {
        plan::f32_scratch_len(self.architecture())
    }

    /// The input shape: images are `height x width x channels` bytes, 0-255,
    /// channels-last.
    pub fn input_shape(&self) -> Shape {
        self.architecture().input()
    }

    /// Classifies an image of 0-255 values, each scaled to `p / 255`.
    pub fn classify<'s>(
        &self,
        image: &[u8],
        scratch: &'s mut [f32],
    ) -> Result<Prediction<'s, f32>, Error> {
        self.classify_observed(image, scratch, |_| {})
    }

    /// [`F32Model::classify`], showing each step's output (after its
    /// activation and fused pool) to `observe`: the host calibrates int8
    /// activation ranges with it.
    pub fn classify_observed<'s>(
        &self,
        image: &[u8],
        scratch: &'s mut [f32],
        observe: impl FnMut(&Observation<'_, f32>),
    ) -> Result<Prediction<'s, f32>, Error> {
        self.run(None, image, scratch, observe)
    }

    /// [`F32Model::classify_observed`] with convolutions and dense layers run by `kernels`
    /// (the host's SIMD builds of [`crate::kernels::wide`]): the same outputs up to rounding.
    pub fn classify_with_kernels<'s>(
        &self,
        kernels: &mut dyn F32Kernels,
        image: &[u8],
        scratch: &'s mut [f32],
        observe: impl FnMut(&Observation<'_, f32>),
    ) -> Result<Prediction<'s, f32>, Error> {
        self.run(Some(kernels), image, scratch, observe)
    }

    fn run<'s>(
        &self,
        mut caller: Option<&mut dyn F32Kernels>,
        image: &[u8],
        scratch: &'s mut [f32],
        observe: impl FnMut(&Observation<'_, f32>),
    ) -> Result<Prediction<'s, f32>, Error> {
        let backend = if caller.is_some() {
            Backend::Caller
        } else {
            Backend::Portable
        };
        let architecture = self.architecture();
        let expected = architecture.input().values();
        if image.len() != expected {
            return Err(Error::InputLength {
                expected,
                found: image.len(),
            });
        }
        let needed = plan::f32_scratch_len(architecture);
        let arena = arena(scratch, needed)?;
        for (slot, &pixel) in arena.iter_mut().zip(image) {
            *slot = f32::from(pixel) / 255.0;
        }
        let mut records = self.layers();
        let run = |step: &Step, input: &[f32], output: &mut [f32], _work: &mut [f32]| {
            let ran = match step.operation {
                Operation::Conv { conv, pooled } => {
                    let record = records.next().ok_or(Error::Malformed)?;
                    let geometry = ConvGeometry::new(&conv, step.input, pooled);
                    let layer = f32_conv_layer(geometry, &record, step).ok_or(Error::Malformed)?;
                    match &mut caller {
                        Some(caller) => caller.conv(input, &layer, output),
                        None => kf32::conv(input, &layer, output),
                    }
                }
                Operation::Pool => max_pool2(input, step.input, output),
                Operation::Dense => {
                    let record = records.next().ok_or(Error::Malformed)?;
                    let layer = kf32::DenseLayer::new(
                        step.input.values(),
                        record.weights,
                        record.bias,
                        step.layer.activation(),
                    )
                    .ok_or(Error::Malformed)?;
                    match &mut caller {
                        Some(caller) => caller.dense(input, &layer, output),
                        None => kf32::dense(input, &layer, output),
                    }
                }
            };
            ran.map(|()| backend).ok_or(Error::Malformed)
        };
        run_steps(architecture, arena, run, observe)
    }

    /// Softmax probabilities of f32 logits, into `probabilities`.
    pub fn probabilities(&self, logits: &[f32], probabilities: &mut [f32]) {
        let used = probabilities.len().min(logits.len());
        let probabilities = probabilities.get_mut(..used).unwrap_or(&mut []);
        probabilities.copy_from_slice(logits.get(..used).unwrap_or(&[]));
        kf32::softmax(probabilities);
    }
}
