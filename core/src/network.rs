//! Runs the whole network on one image, int8 or f32, in caller-provided
//! scratch memory.

use crate::arch::{CLASSES, Image, Layer, Tensor};
use crate::format::{F32Model, Int8Model, QuantParams};
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

/// Activations of the int8 network: 22,128 bytes, every intermediate tensor
/// of the fused pipeline, none at full convolution resolution.
///
/// Allocate it once (a `static` on a microcontroller) and reuse it.
#[derive(Clone, Debug)]
pub struct Int8Scratch {
    input: Tensor<i8, 28, 28, 1>,
    conv1: Tensor<i8, 14, 14, 64>,
    conv2: Tensor<i8, 7, 7, 128>,
    conv3: Tensor<i8, 3, 3, 256>,
    dense1: [i8; 128],
    dense2: [i8; 64],
    dense3: [i8; 32],
}

impl Int8Scratch {
    /// Zeroed scratch; `const`, so it can initialise a `static`.
    pub const fn new() -> Self {
        Int8Scratch {
            input: [[[0; 1]; 28]; 28],
            conv1: [[[0; 64]; 14]; 14],
            conv2: [[[0; 128]; 7]; 7],
            conv3: [[[0; 256]; 3]; 3],
            dense1: [0; 128],
            dense2: [0; 64],
            dense3: [0; 32],
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
    /// Classifies a 28x28 image of 0-255 pixels (0 = background).
    pub fn classify(&self, image: &Image, scratch: &mut Int8Scratch) -> Prediction<i8> {
        self.classify_observed(image, scratch, |_, _| {})
    }

    /// [`Int8Model::classify`], calling `after_layer` with each layer's
    /// output (after its ReLU and max-pool, flattened) as the layer finishes:
    /// to time layers on a device, or to inspect activations.
    pub fn classify_observed(
        &self,
        image: &Image,
        scratch: &mut Int8Scratch,
        mut after_layer: impl FnMut(Layer, &[i8]),
    ) -> Prediction<i8> {
        // Scale 1/255 and zero point -128 make quantisation exact: p -> p - 128.
        load_image(image, &mut scratch.input, |p| (p ^ 0x80) as i8);
        ki8::conv3x3_relu_maxpool2(&scratch.input, &self.conv1, &mut scratch.conv1);
        after_layer(Layer::Conv1, scratch.conv1.as_flattened().as_flattened());
        ki8::conv3x3_relu_maxpool2(&scratch.conv1, &self.conv2, &mut scratch.conv2);
        after_layer(Layer::Conv2, scratch.conv2.as_flattened().as_flattened());
        ki8::conv3x3_relu_maxpool2(&scratch.conv2, &self.conv3, &mut scratch.conv3);
        after_layer(Layer::Conv3, scratch.conv3.as_flattened().as_flattened());
        ki8::dense(&scratch.conv3, &self.dense1, &mut scratch.dense1);
        after_layer(Layer::Dense1, &scratch.dense1);
        ki8::dense_vector(&scratch.dense1, &self.dense2, &mut scratch.dense2);
        after_layer(Layer::Dense2, &scratch.dense2);
        ki8::dense_vector(&scratch.dense2, &self.dense3, &mut scratch.dense3);
        after_layer(Layer::Dense3, &scratch.dense3);
        let mut logits = [0; CLASSES];
        ki8::dense_vector(&scratch.dense3, &self.dense4, &mut logits);
        after_layer(Layer::Dense4, &logits);
        Prediction::from_logits(logits)
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

const _: () = assert!(Int8Scratch::BYTES == 22_128);
const _: () = assert!(F32Scratch::BYTES == 88_512);
