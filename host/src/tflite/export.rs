//! tinycnn int8 model to `.tflite`.

use anyhow::{Result, bail};
use tinycnn::Int8Model;
use tinycnn::arch::{Activation, Layer, Padding, PoolKind, Shape, Window};
use tinycnn::format::QuantParams;
use tinycnn::quant;

use super::{FILE_IDENTIFIER, op, option, tensor_type, tflite};
use crate::model_files::floats;

/// Writes `model` as a TensorFlow Lite flatbuffer that computes the same int8 bytes: an int8
/// input `[1, height, width, channels]` (or `[1, n]` for a vector that a dense layer reads)
/// with the model's input quantisation, one `CONV_2D` (with its fused activation) per
/// convolution, `DEPTHWISE_CONV_2D` per depthwise convolution, `MAX_POOL_2D` or
/// `AVERAGE_POOL_2D` per pool (a global average pool is an `AVERAGE_POOL_2D` over the whole
/// map), for a residual block a 1x1 `CONV_2D` of its input when it projects and an `ADD` at
/// its end, a `RESHAPE` for the flatten, `FULLY_CONNECTED` per dense layer and a `SOFTMAX`
/// where the model has one; the last layer's output is the graph's. Dropouts are left out, as
/// a converter does.
///
/// TensorFlow Lite derives its integer constants from the tensors' scales; a model whose
/// additions or softmax hold other constants than those (no file tinycnn writes) is refused.
/// A model of format version 3 computes TensorFlow Lite Micro's bytes; one of versions 1 and
/// 2 the desktop interpreter's (its dense layers round once).
pub fn export(model: &Int8Model<'_>) -> Result<Vec<u8>> {
    let architecture = model.architecture();
    let mut graph = GraphBuilder::default();
    let input = architecture.input();
    let mut quantization = model.input_quantization();
    let vector_input = input.is_vector()
        && matches!(
            architecture
                .layers()
                .iter()
                .find(|l| !matches!(l, Layer::Dropout(_))),
            Some(Layer::Dense(_))
        );
    let mut current = if vector_input {
        graph.vector("input", input.channels, quantization)
    } else {
        graph.activation("input", input, quantization)
    };
    // The open residual block's shortcut: its tensor and quantisation.
    let mut shortcut = (current, quantization);
    let records: Vec<_> = model.layers().collect();
    for info in architecture.iter() {
        let name = info.name.to_string();
        let record = info.record.and_then(|i| records.get(i));
        let needs_record =
            || record.ok_or_else(|| anyhow::anyhow!("{name}: the model has no record for it"));
        match info.layer {
            Layer::Conv(conv) => {
                let record = needs_record()?;
                let window = conv.window;
                let weights = graph.weights(
                    &format!("{name}/weights"),
                    vec![
                        info.outputs(),
                        usize::from(window.height),
                        usize::from(window.width),
                        info.input.channels,
                    ],
                    record.weights,
                    record.weight_scales,
                    0,
                );
                let bias = graph.bias(&name, record.bias, quantization, record.weight_scales);
                let output = graph.activation(&name, info.output, record.output);
                graph.conv(
                    vec![current, weights, bias],
                    output,
                    &window,
                    conv.activation,
                );
                current = output;
                quantization = record.output;
            }
            Layer::Depthwise(depthwise) => {
                let record = needs_record()?;
                let window = depthwise.window;
                let weights = graph.weights(
                    &format!("{name}/weights"),
                    vec![
                        1,
                        usize::from(window.height),
                        usize::from(window.width),
                        info.outputs(),
                    ],
                    record.weights,
                    record.weight_scales,
                    3,
                );
                let bias = graph.bias(&name, record.bias, quantization, record.weight_scales);
                let output = graph.activation(&name, info.output, record.output);
                let options = tflite::DepthwiseConv2DOptions {
                    padding: padding(window.padding),
                    stride_w: i32::from(window.stride_width),
                    stride_h: i32::from(window.stride_height),
                    depth_multiplier: i32::from(depthwise.multiplier),
                    fused_activation_function: activation(depthwise.activation),
                    dilation_w_factor: 1,
                    dilation_h_factor: 1,
                };
                graph.operator(
                    op::DEPTHWISE_CONV_2D,
                    vec![current, weights, bias],
                    output,
                    Some(tflite::BuiltinOptions::DepthwiseConv2DOptions(Box::new(
                        options,
                    ))),
                );
                current = output;
                quantization = record.output;
            }
            Layer::MaxPool => {
                let output = graph.activation(&name, info.output, quantization);
                let window = Window {
                    height: 2,
                    width: 2,
                    stride_height: 2,
                    stride_width: 2,
                    padding: Padding::Valid,
                };
                graph.pool(op::MAX_POOL_2D, current, output, &window);
                current = output;
            }
            Layer::Pool(pool) => {
                let output = graph.activation(&name, info.output, quantization);
                let code = match pool.kind {
                    PoolKind::Max => op::MAX_POOL_2D,
                    PoolKind::Average => op::AVERAGE_POOL_2D,
                };
                graph.pool(code, current, output, &pool.window);
                current = output;
            }
            Layer::GlobalAveragePool => {
                let output = graph.activation(&name, info.output, quantization);
                let side = |value: usize| {
                    u8::try_from(value).map_err(|_| {
                        anyhow::anyhow!(
                            "{name}: a global average pool over a side of {value}: \
                             TensorFlow Lite's pool windows are at most 255 wide here"
                        )
                    })
                };
                let window = Window {
                    height: side(info.input.height)?,
                    width: side(info.input.width)?,
                    stride_height: 1,
                    stride_width: 1,
                    padding: Padding::Valid,
                };
                graph.pool(op::AVERAGE_POOL_2D, current, output, &window);
                current = output;
            }
            Layer::Residual(kind) => match kind.projection() {
                None => shortcut = (current, quantization),
                Some(conv) => {
                    let record = needs_record()?;
                    let kept = info.shortcut().unwrap_or(info.output);
                    let weights = graph.weights(
                        &format!("{name}/weights"),
                        vec![info.outputs(), 1, 1, info.input.channels],
                        record.weights,
                        record.weight_scales,
                        0,
                    );
                    let bias = graph.bias(&name, record.bias, quantization, record.weight_scales);
                    let output = graph.activation(&name, kept, record.output);
                    graph.conv(
                        vec![current, weights, bias],
                        output,
                        &conv.window,
                        Activation::None,
                    );
                    shortcut = (output, record.output);
                }
            },
            Layer::Add(add_activation) => {
                let record = needs_record()?;
                let derived = quant::add_params(
                    [quantization.scale, shortcut.1.scale],
                    [quantization.zero_point, shortcut.1.zero_point],
                    record.output.scale,
                    record.output.zero_point,
                );
                let stored = |index: usize| {
                    let multiplier = record
                        .multipliers
                        .get(4 * index..4 * index + 4)
                        .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                    let shift = record.shifts.get(index).map(|&s| i32::from(s as i8));
                    (multiplier, shift)
                };
                let (multipliers, shifts) = derived.record_multipliers();
                if (0..3).any(|i| stored(i) != (Some(multipliers[i]), Some(shifts[i]))) {
                    bail!(
                        "{name}: the addition's multipliers are not the ones TensorFlow Lite \
                         derives from its scales"
                    );
                }
                let output = graph.activation(&name, info.output, record.output);
                let options = tflite::AddOptions {
                    fused_activation_function: activation(add_activation),
                    pot_scale_int16: true,
                };
                graph.operator(
                    op::ADD,
                    vec![current, shortcut.0],
                    output,
                    Some(tflite::BuiltinOptions::AddOptions(Box::new(options))),
                );
                current = output;
                quantization = record.output;
            }
            Layer::Softmax => {
                let record = needs_record()?;
                let derived = quant::softmax_params(quantization.scale, 1.0);
                let stored = (
                    record
                        .multipliers
                        .get(..4)
                        .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                    record.shifts.first().map(|&s| i32::from(s as i8)),
                    record
                        .bias
                        .get(..4)
                        .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                );
                if stored
                    != (
                        Some(derived.input_multiplier),
                        Some(derived.input_left_shift),
                        Some(derived.diff_min),
                    )
                {
                    bail!(
                        "{name}: the softmax's constants are not TensorFlow Lite's for beta 1 \
                         and its input's scale"
                    );
                }
                let output = graph.vector(&name, info.output.values(), record.output);
                let options = tflite::SoftmaxOptions { beta: 1.0 };
                graph.operator(
                    op::SOFTMAX,
                    vec![current],
                    output,
                    Some(tflite::BuiltinOptions::SoftmaxOptions(Box::new(options))),
                );
                current = output;
                quantization = record.output;
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
                let record = needs_record()?;
                let weights = graph.weights(
                    &format!("{name}/weights"),
                    vec![info.outputs(), info.input.values()],
                    record.weights,
                    record.weight_scales,
                    0,
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

fn padding(padding: Padding) -> i8 {
    match padding {
        Padding::Same => option::PADDING_SAME,
        Padding::Valid => option::PADDING_VALID,
    }
}

fn activation(activation: Activation) -> i8 {
    match activation {
        Activation::None => option::ACTIVATION_NONE,
        Activation::Relu => option::ACTIVATION_RELU,
        Activation::Relu6 => option::ACTIVATION_RELU6,
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

    /// Symmetric quantisation with one scale per output channel along `dimension`.
    fn per_channel(scales: Vec<f32>, dimension: i32) -> tflite::QuantizationParameters {
        tflite::QuantizationParameters {
            zero_point: Some(vec![0; scales.len()]),
            scale: Some(scales),
            quantized_dimension: dimension,
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

    /// Symmetric int8 weights, one scale per output channel (along `dimension`: 0, or 3 for
    /// a depthwise convolution's `[1, rows, columns, output channels]`).
    fn weights(
        &mut self,
        name: &str,
        shape: Vec<usize>,
        weights: &[u8],
        scales: &[u8],
        dimension: i32,
    ) -> i32 {
        self.tensor(
            name,
            shape,
            tensor_type::INT8,
            Some(weights.to_vec()),
            Some(Self::per_channel(floats(scales), dimension)),
        )
    }

    fn conv(&mut self, inputs: Vec<i32>, output: i32, window: &Window, activation: Activation) {
        let options = tflite::Conv2DOptions {
            padding: padding(window.padding),
            stride_w: i32::from(window.stride_width),
            stride_h: i32::from(window.stride_height),
            fused_activation_function: self::activation(activation),
            dilation_w_factor: 1,
            dilation_h_factor: 1,
        };
        self.operator(
            op::CONV_2D,
            inputs,
            output,
            Some(tflite::BuiltinOptions::Conv2DOptions(Box::new(options))),
        );
    }

    fn pool(&mut self, code: i32, input: i32, output: i32, window: &Window) {
        let options = tflite::Pool2DOptions {
            padding: padding(window.padding),
            stride_w: i32::from(window.stride_width),
            stride_h: i32::from(window.stride_height),
            filter_width: i32::from(window.width),
            filter_height: i32::from(window.height),
            fused_activation_function: option::ACTIVATION_NONE,
        };
        self.operator(
            code,
            vec![input],
            output,
            Some(tflite::BuiltinOptions::Pool2DOptions(Box::new(options))),
        );
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
            Some(Self::per_channel(scales, 0)),
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
