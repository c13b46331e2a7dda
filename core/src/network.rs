//! Runs the whole network on one image, int8 or f32, in caller-provided
//! scratch memory.

#[cfg(tinycnn_arm_dsp)]
use crate::arch::FLATTENED;
use crate::arch::{CLASSES, DENSE_UNITS, Image, Layer, Tensor};
use crate::format::{F32Model, Int8Model, QuantParams};
#[cfg(tinycnn_arm_dsp)]
use crate::kernels::dsp;
use crate::kernels::int8::Backend;
use crate::kernels::{argmax, f32 as kf32, int8 as ki8};

/// A classification: the digit and the ten logits it was chosen from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prediction<T> {
    /// The predicted digit, `0..=9`: the index of the largest logit (the
    /// lowest index on ties).
    pub digit: u8,
    /// The last layer's outputs before softmax.
    pub logits: [T; CLASSES],
}

impl<T: PartialOrd + Copy> Prediction<T> {
    fn from_logits(logits: [T; CLASSES]) -> Self {
        // argmax of ten values is below 10 and fits a u8.
        Prediction {
            digit: argmax(&logits) as u8,
            logits,
        }
    }
}

/// Activations of the int8 network, none at full convolution resolution:
/// 19,040 bytes, or 23,424 on targets with the Arm DSP kernels (see
/// [`Backend`]), which also need room to unroll convolution windows.
///
/// Three regions, each reused once its tensor is dead (sizes in bytes):
///
/// | layer | reads | writes | DSP work |
/// | --- | --- | --- | --- |
/// | conv1 | image in B (784) | A (12,544) | C |
/// | conv2 | A | B (6,272) | C (4,608) |
/// | conv3 | B | head of A (2,304) | rest of A (9,216) |
/// | dense1 | head of A | C (128) | B (4,608) |
/// | dense2-4 | C | C (64, 32), logits | B |
///
/// Allocate it once (a `static` on a microcontroller) and reuse it.
#[derive(Clone, Debug)]
#[repr(C, align(4))] // the DSP kernels read their work areas as words
pub struct Int8Scratch {
    a: [i8; REGION_A],
    b: [i8; REGION_B],
    c: [i8; REGION_C],
}

const REGION_A: usize = 14 * 14 * 64;
const REGION_B: usize = 7 * 7 * 128;
const DENSE_OUTPUTS: usize = DENSE_UNITS[0] + DENSE_UNITS[1] + DENSE_UNITS[2];
#[cfg(not(tinycnn_arm_dsp))]
const REGION_C: usize = DENSE_OUTPUTS;
#[cfg(tinycnn_arm_dsp)]
const REGION_C: usize = {
    let conv2_work = dsp::conv_work_bytes::<14, 14, 64, 128>();
    if conv2_work > DENSE_OUTPUTS {
        conv2_work
    } else {
        DENSE_OUTPUTS
    }
};
// What else lives in the regions (see the table above).
const _: () = assert!(28 * 28 <= REGION_B && 3 * 3 * 256 <= REGION_A);
#[cfg(tinycnn_arm_dsp)]
const _: () = {
    assert!(dsp::conv_work_bytes::<28, 28, 1, 64>() <= REGION_C);
    assert!(3 * 3 * 256 + dsp::conv_work_bytes::<7, 7, 128, 256>() <= REGION_A);
    assert!(dsp::dense_work_bytes(FLATTENED) <= REGION_B);
};

impl Int8Scratch {
    /// Zeroed scratch; `const`, so it can initialise a `static`.
    pub const fn new() -> Self {
        Int8Scratch {
            a: [0; REGION_A],
            b: [0; REGION_B],
            c: [0; REGION_C],
        }
    }

    /// Bytes of RAM this scratch occupies.
    pub const BYTES: usize = core::mem::size_of::<Self>();
}

impl Default for Int8Scratch {
    fn default() -> Self {
        Self::new()
    }
}

/// The first `H x W x C` bytes of a region as a tensor. Regions are sized by
/// constants checked at compile time, so this never returns `None`.
fn tensor<const H: usize, const W: usize, const C: usize>(
    bytes: &[i8],
) -> Option<&Tensor<i8, H, W, C>> {
    bytes
        .as_chunks::<C>()
        .0
        .as_chunks::<W>()
        .0
        .first_chunk::<H>()
}

/// [`tensor`], mutable.
fn tensor_mut<const H: usize, const W: usize, const C: usize>(
    bytes: &mut [i8],
) -> Option<&mut Tensor<i8, H, W, C>> {
    bytes
        .as_chunks_mut::<C>()
        .0
        .as_chunks_mut::<W>()
        .0
        .first_chunk_mut::<H>()
}

/// Activations of the f32 network: 88,512 bytes.
#[derive(Clone, Debug)]
pub struct F32Scratch {
    input: Tensor<f32, 28, 28, 1>,
    conv1: Tensor<f32, 14, 14, 64>,
    conv2: Tensor<f32, 7, 7, 128>,
    conv3: Tensor<f32, 3, 3, 256>,
    dense1: [f32; 128],
    dense2: [f32; 64],
    dense3: [f32; 32],
}

impl F32Scratch {
    /// Zeroed scratch.
    pub const fn new() -> Self {
        F32Scratch {
            input: [[[0.0; 1]; 28]; 28],
            conv1: [[[0.0; 64]; 14]; 14],
            conv2: [[[0.0; 128]; 7]; 7],
            conv3: [[[0.0; 256]; 3]; 3],
            dense1: [0.0; 128],
            dense2: [0.0; 64],
            dense3: [0.0; 32],
        }
    }

    /// Bytes of RAM this scratch occupies.
    pub const BYTES: usize = core::mem::size_of::<Self>();
}

impl Default for F32Scratch {
    fn default() -> Self {
        Self::new()
    }
}

/// Copies an image into a `28 x 28 x 1` tensor, converting each pixel.
fn load_image<T>(image: &Image, tensor: &mut Tensor<T, 28, 28, 1>, convert: impl Fn(u8) -> T) {
    for (pixel, &value) in tensor.iter_mut().flatten().zip(image) {
        *pixel = [convert(value)];
    }
}

impl Int8Model<'_> {
    /// Classifies a 28x28 image of 0-255 pixels (0 = background), with the
    /// fastest kernels of this target ([`Backend::FASTEST`]).
    pub fn classify(&self, image: &Image, scratch: &mut Int8Scratch) -> Prediction<i8> {
        self.classify_with(Backend::FASTEST, image, scratch, |_, _| {})
    }

    /// [`Int8Model::classify`], calling `after_layer` with each layer's
    /// output (after its ReLU and max-pool, flattened) as the layer finishes:
    /// to time layers on a device, or to inspect activations.
    pub fn classify_observed(
        &self,
        image: &Image,
        scratch: &mut Int8Scratch,
        after_layer: impl FnMut(Layer, &[i8]),
    ) -> Prediction<i8> {
        self.classify_with(Backend::FASTEST, image, scratch, after_layer)
    }

    /// [`Int8Model::classify_observed`] with the given kernels. Every backend
    /// computes the same bits; [`Backend::Portable`] is the reference.
    pub fn classify_with(
        &self,
        backend: Backend,
        image: &Image,
        scratch: &mut Int8Scratch,
        after_layer: impl FnMut(Layer, &[i8]),
    ) -> Prediction<i8> {
        // The views cannot fail (see `tensor`); all-minimum logits would
        // only show that they did.
        self.run(backend, image, scratch, after_layer)
            .unwrap_or(Prediction::from_logits([i8::MIN; CLASSES]))
    }

    fn run(
        &self,
        backend: Backend,
        image: &Image,
        scratch: &mut Int8Scratch,
        mut after_layer: impl FnMut(Layer, &[i8]),
    ) -> Option<Prediction<i8>> {
        let Int8Scratch { a, b, c } = scratch;
        // Scale 1/255 and zero point -128 make quantisation exact: p -> p - 128.
        load_image(image, tensor_mut::<28, 28, 1>(b)?, |p| (p ^ 0x80) as i8);

        let (input, conv1) = (tensor::<28, 28, 1>(b)?, tensor_mut::<14, 14, 64>(a)?);
        match backend {
            Backend::Portable => ki8::conv3x3_relu_maxpool2(input, &self.conv1, conv1),
            #[cfg(tinycnn_arm_dsp)]
            Backend::ArmDsp => _ = dsp::conv3x3_relu_maxpool2(input, &self.conv1, conv1, c),
        }
        after_layer(Layer::Conv1, conv1.as_flattened().as_flattened());

        let (conv1, conv2) = (tensor::<14, 14, 64>(a)?, tensor_mut::<7, 7, 128>(b)?);
        match backend {
            Backend::Portable => ki8::conv3x3_relu_maxpool2(conv1, &self.conv2, conv2),
            #[cfg(tinycnn_arm_dsp)]
            Backend::ArmDsp => _ = dsp::conv3x3_relu_maxpool2(conv1, &self.conv2, conv2, c),
        }
        after_layer(Layer::Conv2, conv2.as_flattened().as_flattened());

        let (conv3, _conv3_work) = a.split_at_mut(3 * 3 * 256);
        let (conv2, conv3) = (tensor::<7, 7, 128>(b)?, tensor_mut::<3, 3, 256>(conv3)?);
        match backend {
            Backend::Portable => ki8::conv3x3_relu_maxpool2(conv2, &self.conv3, conv3),
            #[cfg(tinycnn_arm_dsp)]
            Backend::ArmDsp => {
                _ = dsp::conv3x3_relu_maxpool2(conv2, &self.conv3, conv3, _conv3_work)
            }
        }
        after_layer(Layer::Conv3, conv3.as_flattened().as_flattened());

        let (dense1, rest) = c.split_first_chunk_mut::<{ DENSE_UNITS[0] }>()?;
        let (dense2, rest) = rest.split_first_chunk_mut::<{ DENSE_UNITS[1] }>()?;
        let dense3 = rest.first_chunk_mut::<{ DENSE_UNITS[2] }>()?;
        let mut logits = [0; CLASSES];
        match backend {
            Backend::Portable => {
                ki8::dense(conv3, &self.dense1, dense1);
                after_layer(Layer::Dense1, dense1);
                ki8::dense_vector(dense1, &self.dense2, dense2);
                after_layer(Layer::Dense2, dense2);
                ki8::dense_vector(dense2, &self.dense3, dense3);
                after_layer(Layer::Dense3, dense3);
                ki8::dense_vector(dense3, &self.dense4, &mut logits);
            }
            #[cfg(tinycnn_arm_dsp)]
            Backend::ArmDsp => {
                _ = dsp::dense(conv3, &self.dense1, dense1, b);
                after_layer(Layer::Dense1, dense1);
                _ = dsp::dense_vector(dense1, &self.dense2, dense2, b);
                after_layer(Layer::Dense2, dense2);
                _ = dsp::dense_vector(dense2, &self.dense3, dense3, b);
                after_layer(Layer::Dense3, dense3);
                _ = dsp::dense_vector(dense3, &self.dense4, &mut logits, b);
            }
        }
        after_layer(Layer::Dense4, &logits);
        Some(Prediction::from_logits(logits))
    }

    /// Softmax probabilities of int8 logits (dequantised first).
    pub fn probabilities(&self, logits: &[i8; CLASSES]) -> [f32; CLASSES] {
        let quantization: QuantParams = self.logits_quantization();
        kf32::softmax(&logits.map(|q| quantization.dequantize(q)))
    }
}

impl F32Model<'_> {
    /// Classifies a 28x28 image of 0-255 pixels (scaled to [0, 1]).
    pub fn classify(&self, image: &Image, scratch: &mut F32Scratch) -> Prediction<f32> {
        self.classify_observed(image, scratch, |_, _| {})
    }

    /// [`F32Model::classify`], calling `after_layer` with each layer's output
    /// (after its ReLU and max-pool, flattened): the host calibrates int8
    /// activation ranges with it.
    pub fn classify_observed(
        &self,
        image: &Image,
        scratch: &mut F32Scratch,
        mut after_layer: impl FnMut(Layer, &[f32]),
    ) -> Prediction<f32> {
        load_image(image, &mut scratch.input, |p| f32::from(p) / 255.0);
        kf32::conv3x3_relu_maxpool2(&scratch.input, &self.conv1, &mut scratch.conv1);
        after_layer(Layer::Conv1, scratch.conv1.as_flattened().as_flattened());
        kf32::conv3x3_relu_maxpool2(&scratch.conv1, &self.conv2, &mut scratch.conv2);
        after_layer(Layer::Conv2, scratch.conv2.as_flattened().as_flattened());
        kf32::conv3x3_relu_maxpool2(&scratch.conv2, &self.conv3, &mut scratch.conv3);
        after_layer(Layer::Conv3, scratch.conv3.as_flattened().as_flattened());
        kf32::dense(&scratch.conv3, &self.dense1, &mut scratch.dense1);
        after_layer(Layer::Dense1, &scratch.dense1);
        kf32::dense_vector(&scratch.dense1, &self.dense2, &mut scratch.dense2);
        after_layer(Layer::Dense2, &scratch.dense2);
        kf32::dense_vector(&scratch.dense2, &self.dense3, &mut scratch.dense3);
        after_layer(Layer::Dense3, &scratch.dense3);
        let mut logits = [0.0; CLASSES];
        kf32::dense_vector(&scratch.dense3, &self.dense4, &mut logits);
        after_layer(Layer::Dense4, &logits);
        Prediction::from_logits(logits)
    }

    /// Softmax probabilities of f32 logits.
    pub fn probabilities(&self, logits: &[f32; CLASSES]) -> [f32; CLASSES] {
        kf32::softmax(logits)
    }
}

#[cfg(not(tinycnn_arm_dsp))]
const _: () = assert!(Int8Scratch::BYTES == 19_040);
#[cfg(tinycnn_arm_dsp)]
const _: () = assert!(Int8Scratch::BYTES == 23_424);
const _: () = assert!(F32Scratch::BYTES == 88_512);
