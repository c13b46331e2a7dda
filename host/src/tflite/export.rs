//! tinycnn int8 model to `.tflite`.

use anyhow::{Result, bail};
use tinycnn::Int8Model;
use tinycnn::arch::{Activation, Layer, Padding, Shape};
use tinycnn::format::QuantParams;

use super::{FILE_IDENTIFIER, op, option, tensor_type, tflite};
use crate::export::floats;

/// Writes `model` as a TensorFlow Lite flatbuffer that computes the same int8 bytes: int8
/// input `[1, height, width, channels]` (scale 1/255, zero point -128: a pixel `p` is
/// `p - 128`), one `CONV_2D` (with its fused ReLU) per convolution, `MAX_POOL_2D` per pool,
/// a `RESHAPE` for the flatten, `FULLY_CONNECTED` per dense layer, and the last dense layer's
/// int8 logits as the output (no softmax: the logits are what tinycnn computes, and their
/// largest is the class). Dropouts are left out, as a converter does.
pub fn export(model: &Int8Model<'_>) -> Result<Vec<u8>> {
    let architecture = model.architecture();
    let mut graph = GraphBuilder::default();
    let input = architecture.input();
    let mut quantization = model.input_quantization();
    let mut current = graph.activation("input", input, quantization);
    let records: Vec<_> = model.layers().collect();
    for info in architecture.iter() {
        let name = info.name.to_string();
        match info.layer {
            Layer::Conv(conv) => {
                let Some(record) = info.weighted.and_then(|i| records.get(i)) else {
                    bail!("{name}: the model has no record for it");
                };
                let side = conv.side();
                let weights = graph.weights(
                    &format!("{name}/weights"),
                    vec![info.outputs(), side, side, info.input.channels],
                    record.weights,
                    record.weight_scales,
                );
                let bias = graph.bias(&name, record.bias, quantization, record.weight_scales);
                let output = graph.activation(&name, info.output, record.output);
                let options = tflite::Conv2DOptions {
                    padding: match conv.padding {
                        Padding::Same => option::PADDING_SAME,
                        Padding::Valid => option::PADDING_VALID,
                    },
                    stride_w: 1,
                    stride_h: 1,
                    fused_activation_function: activation(conv.activation),
                    dilation_w_factor: 1,
                    dilation_h_factor: 1,
                };
                graph.operator(
                    op::CONV_2D,
                    vec![current, weights, bias],
                    output,
                    Some(tflite::BuiltinOptions::Conv2DOptions(Box::new(options))),
                );
                current = output;
                quantization = record.output;
            }
            Layer::MaxPool => {
                let output = graph.activation(&name, info.output, quantization);
                let options = tflite::Pool2DOptions {
                    padding: option::PADDING_VALID,
                    stride_w: 2,
                    stride_h: 2,
                    filter_width: 2,
                    filter_height: 2,
                    fused_activation_function: option::ACTIVATION_NONE,
                };
                graph.operator(
                    op::MAX_POOL_2D,
                    vec![current],
                    output,
                    Some(tflite::BuiltinOptions::Pool2DOptions(Box::new(options))),
                );
                current = output;
            }
            Layer::Dropout(_) => {}
            Layer::Flatten => {
                let values = info.output.values();
                let shape = graph.constant_shape(&format!("{name}/shape"), &[1, values]);
                let output = graph.vector(&name, values, quantization);
                let options = tflite::ReshapeOptions {
                    new_shape: Some(vec![1, values as i32]),
                };
                graph.operator(
                    op::RESHAPE,
                    vec![current, shape],
                    output,
                    Some(tflite::BuiltinOptions::ReshapeOptions(Box::new(options))),
                );
                current = output;
            }
            Layer::Dense(dense) => {
                let Some(record) = info.weighted.and_then(|i| records.get(i)) else {
                    bail!("{name}: the model has no record for it");
                };
                let weights = graph.weights(
                    &format!("{name}/weights"),
                    vec![info.outputs(), info.input.values()],
                    record.weights,
                    record.weight_scales,
                );
                let bias = graph.bias(&name, record.bias, quantization, record.weight_scales);
                let output = graph.vector(&name, info.outputs(), record.output);
                let options = tflite::FullyConnectedOptions {
                    fused_activation_function: activation(dense.activation),
                    weights_format: 0,
                    keep_num_dims: false,
                    asymmetric_quantize_inputs: false,
                };
                graph.operator(
                    op::FULLY_CONNECTED,
                    vec![current, weights, bias],
                    output,
                    Some(tflite::BuiltinOptions::FullyConnectedOptions(Box::new(
                        options,
                    ))),
                );
                current = output;
                quantization = record.output;
            }
        }
    }
    Ok(graph.finish(current))
}

fn activation(activation: Activation) -> i8 {
    match activation {
        Activation::None => option::ACTIVATION_NONE,
        Activation::Relu => option::ACTIVATION_RELU,
    }
}

/// The tensors, buffers and operators of the one subgraph, as they are added.
#[derive(Default)]
struct GraphBuilder {
    tensors: Vec<tflite::Tensor>,
    /// Buffer 0 is the empty one every activation points at.
    buffers: Vec<tflite::Buffer>,
    codes: Vec<i32>,
    operators: Vec<tflite::Operator>,
}

impl GraphBuilder {
    fn tensor(
        &mut self,
        name: &str,
        shape: Vec<usize>,
        kind: i8,
        data: Option<Vec<u8>>,
        quantization: Option<tflite::QuantizationParameters>,
    ) -> i32 {
        if self.buffers.is_empty() {
            self.buffers.push(tflite::Buffer::default());
        }
        let buffer = match data {
            Some(data) => {
                self.buffers.push(tflite::Buffer {
                    data: Some(data),
                    offset: 0,
                    size: 0,
                });
                (self.buffers.len() - 1) as u32
            }
            None => 0,
        };
        self.tensors.push(tflite::Tensor {
            shape: Some(shape.iter().map(|&d| d as i32).collect()),
            type_: kind,
            buffer,
            name: Some(name.to_owned()),
            quantization: quantization.map(Box::new),
            is_variable: false,
            shape_signature: None,
        });
        (self.tensors.len() - 1) as i32
    }

    fn per_tensor(quantization: QuantParams) -> tflite::QuantizationParameters {
        tflite::QuantizationParameters {
            scale: Some(vec![quantization.scale]),
            zero_point: Some(vec![i64::from(quantization.zero_point)]),
            ..Default::default()
        }
    }

    /// Symmetric quantisation with one scale per output channel (dimension 0).
    fn per_channel(scales: Vec<f32>) -> tflite::QuantizationParameters {
        tflite::QuantizationParameters {
            zero_point: Some(vec![0; scales.len()]),
            scale: Some(scales),
            quantized_dimension: 0,
            ..Default::default()
        }
    }

    fn activation(&mut self, name: &str, shape: Shape, quantization: QuantParams) -> i32 {
        self.tensor(
            name,
            vec![1, shape.height, shape.width, shape.channels],
            tensor_type::INT8,
            None,
            Some(Self::per_tensor(quantization)),
        )
    }

    fn vector(&mut self, name: &str, values: usize, quantization: QuantParams) -> i32 {
        self.tensor(
            name,
            vec![1, values],
            tensor_type::INT8,
            None,
            Some(Self::per_tensor(quantization)),
        )
    }

    /// Symmetric int8 weights, one scale per output channel (dimension 0).
    fn weights(&mut self, name: &str, shape: Vec<usize>, weights: &[u8], scales: &[u8]) -> i32 {
        self.tensor(
            name,
            shape,
            tensor_type::INT8,
            Some(weights.to_vec()),
            Some(Self::per_channel(floats(scales))),
        )
    }

    /// The int32 bias of a layer, quantised at `input scale x weight scale` per channel as
    /// TensorFlow Lite's int8 specification has it (its kernels check the scales agree).
    fn bias(&mut self, layer: &str, bias: &[u8], input: QuantParams, weight_scales: &[u8]) -> i32 {
        let scales: Vec<f32> = floats(weight_scales)
            .iter()
            .map(|w| input.scale * w)
            .collect();
        self.tensor(
            &format!("{layer}/bias"),
            vec![scales.len()],
            tensor_type::INT32,
            Some(bias.to_vec()),
            Some(Self::per_channel(scales)),
        )
    }

    fn constant_shape(&mut self, name: &str, shape: &[usize]) -> i32 {
        let data = shape
            .iter()
            .flat_map(|&d| (d as i32).to_le_bytes())
            .collect();
        self.tensor(
            name,
            vec![shape.len()],
            tensor_type::INT32,
            Some(data),
            None,
        )
    }

    fn operator(
        &mut self,
        code: i32,
        inputs: Vec<i32>,
        output: i32,
        options: Option<tflite::BuiltinOptions>,
    ) {
        let index = match self.codes.iter().position(|&c| c == code) {
            Some(index) => index,
            None => {
                self.codes.push(code);
                self.codes.len() - 1
            }
        };
        self.operators.push(tflite::Operator {
            opcode_index: index as u32,
            inputs: Some(inputs),
            outputs: Some(vec![output]),
            builtin_options: options,
            custom_options: None,
            custom_options_format: 0,
        });
    }

    fn finish(self, output: i32) -> Vec<u8> {
        let operator_codes = self
            .codes
            .iter()
            .map(|&code| tflite::OperatorCode {
                // Codes up to 127 go in both fields, as converters write them, so that
                // readers of either schema version find them.
                deprecated_builtin_code: i8::try_from(code).unwrap_or(127),
                custom_code: None,
                version: 1,
                builtin_code: code,
            })
            .collect();
        let model = tflite::Model {
            version: 3,
            operator_codes: Some(operator_codes),
            subgraphs: Some(vec![tflite::SubGraph {
                tensors: Some(self.tensors),
                inputs: Some(vec![0]),
                outputs: Some(vec![output]),
                operators: Some(self.operators),
                name: Some("main".to_owned()),
            }]),
            description: Some("tinycnn int8 model".to_owned()),
            buffers: Some(self.buffers),
        };
        let mut builder = planus::Builder::new();
        let mut bytes = builder.finish(&model, Some(*FILE_IDENTIFIER)).to_vec();
        identifier_after_root_offset(&mut bytes);
        bytes
    }
}

/// A flatbuffer starts with the root table's offset and then the file identifier; planus 1.3
/// writes the two the other way round (the offset counted from its own position, 4). Swapping
/// them, with the offset counted from 0, gives the layout TensorFlow Lite checks for; a planus
/// that writes the standard layout is left alone.
pub(super) fn identifier_after_root_offset(bytes: &mut [u8]) {
    if bytes.len() < 8 || bytes[0..4] != *FILE_IDENTIFIER {
        return;
    }
    let offset = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) + 4;
    bytes[0..4].copy_from_slice(&offset.to_le_bytes());
    bytes[4..8].copy_from_slice(FILE_IDENTIFIER);
}
