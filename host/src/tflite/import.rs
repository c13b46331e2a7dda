//! `.tflite` to tinycnn int8 model.

use anyhow::{Context, Result, anyhow, bail, ensure};
use planus::ReadAsRoot;
use tinycnn::Int8Model;
use tinycnn::arch::{
    Activation, Architecture, Conv, Dense, Layer, MAX_LAYERS, MAX_TENSOR_VALUES, Padding, Shape,
};
use tinycnn::format::{Int8LayerRecord, Int8Record, QuantParams};

use super::{FILE_IDENTIFIER, describe_operator, op, option, tensor_type, tflite, type_name};
use crate::export::quantize::quantize_multiplier;

/// The largest `.tflite` file [`import`] reads: far above any network tinycnn can run (its
/// tensors are limited to 16 M values each), and small enough to read into memory.
pub const MAX_FILE_BYTES: u64 = 512 << 20;

/// A TensorFlow Lite model turned into a tinycnn int8 model.
#[derive(Clone, Debug)]
pub struct Imported {
    /// The tinycnn int8 model file (format version 2).
    pub file: Vec<u8>,
    /// Its network.
    pub architecture: Architecture,
    /// The graph's operators the model leaves out, as `SOFTMAX (operator 11)`: the float edges
    /// and the final softmax, which do not change the predicted class.
    pub left_out: Vec<String>,
    /// The graph's tensor that holds what the tinycnn model outputs (the last
    /// `FULLY_CONNECTED`'s output, the logits), for comparisons with TensorFlow Lite.
    pub logits_tensor: usize,
}

/// Reads a fully-integer TensorFlow Lite model and writes the tinycnn int8 model that computes
/// the same bytes; see the [module](super) for what it accepts.
pub fn import(bytes: &[u8]) -> Result<Imported> {
    ensure!(
        bytes.len() >= 8 && &bytes[4..8] == FILE_IDENTIFIER,
        "not a TensorFlow Lite model: no \"TFL3\" file identifier at bytes 4..8"
    );
    let model = tflite::ModelRef::read_as_root(bytes)
        .map_err(|e| anyhow!("not a valid TensorFlow Lite flatbuffer: {e}"))?;
    let graph = Graph::new(model)?;
    graph.convert()
}

/// SHAPE, STRIDED_SLICE and PACK: what a converter uses to compute a flatten's shape.
const SHAPE_CODES: [i32; 3] = [op::SHAPE, op::STRIDED_SLICE, op::PACK];

/// Quantisation of one tensor.
#[derive(Clone, Debug)]
struct Quantization {
    scales: Vec<f32>,
    zero_points: Vec<i64>,
    dimension: i32,
}

/// One tensor of the graph, checked: a shape of positive dimensions, and data of exactly its
/// size where it has data.
struct Tensor<'a> {
    index: usize,
    shape: Vec<usize>,
    kind: i8,
    quantization: Option<Quantization>,
    data: Option<&'a [u8]>,
}

impl Tensor<'_> {
    fn values(&self) -> usize {
        self.shape.iter().product()
    }

    fn name(&self) -> String {
        format!("tensor {} ({})", self.index, describe_shape(&self.shape))
    }

    fn expect_type(&self, kind: i8, role: &str) -> Result<()> {
        ensure!(
            self.kind == kind,
            "its {role}, {}, is {}: tinycnn needs {}",
            self.name(),
            type_name(self.kind),
            type_name(kind)
        );
        Ok(())
    }

    /// The one scale and zero point of an activation tensor.
    fn activation_quantization(&self, role: &str) -> Result<QuantParams> {
        let quantization = self
            .quantization
            .as_ref()
            .filter(|q| !q.scales.is_empty())
            .ok_or_else(|| anyhow!("its {role}, {}, is not quantised", self.name()))?;
        ensure!(
            quantization.scales.len() == 1 && quantization.zero_points.len() == 1,
            "its {role}, {}, has {} scales: activations need one (per-tensor)",
            self.name(),
            quantization.scales.len()
        );
        let scale = quantization.scales[0];
        let zero_point = quantization.zero_points[0];
        ensure!(
            scale.is_finite() && scale > 0.0,
            "its {role}, {}, has the scale {scale}",
            self.name()
        );
        let zero_point = i8::try_from(zero_point).map_err(|_| {
            anyhow!(
                "its {role}, {}, has the zero point {zero_point}, outside int8",
                self.name()
            )
        })?;
        Ok(QuantParams { scale, zero_point })
    }

    /// The per-output-channel scales of symmetric int8 weights whose first dimension counts
    /// the outputs.
    fn weight_scales(&self, outputs: usize) -> Result<Vec<f32>> {
        let quantization = self
            .quantization
            .as_ref()
            .filter(|q| !q.scales.is_empty())
            .ok_or_else(|| anyhow!("its weights, {}, are not quantised", self.name()))?;
        ensure!(
            quantization.zero_points.iter().all(|&z| z == 0),
            "its weights, {}, are asymmetric (a zero point other than 0): tinycnn's weights \
             are symmetric int8, as TensorFlow Lite's int8 specification has them",
            self.name()
        );
        let scales = match quantization.scales.len() {
            // Per-tensor: the same scale for every output channel.
            1 => vec![quantization.scales[0]; outputs],
            n if n == outputs && quantization.dimension == 0 => quantization.scales.clone(),
            n => bail!(
                "its weights, {}, have {n} scales along dimension {}: tinycnn needs one per \
                 output channel (dimension 0) or one for the tensor",
                self.name(),
                quantization.dimension
            ),
        };
        if let Some(bad) = scales.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            bail!("its weights, {}, have the scale {bad}", self.name());
        }
        Ok(scales)
    }

    /// The int8 weights, refusing -128 (outside TensorFlow Lite's symmetric range).
    fn int8_weights(&self) -> Result<Vec<u8>> {
        let data = self
            .data
            .ok_or_else(|| anyhow!("its weights, {}, have no data", self.name()))?;
        ensure!(
            !data.contains(&0x80),
            "its weights, {}, hold -128: int8 weights are -127..=127",
            self.name()
        );
        Ok(data.to_vec())
    }
}

struct Graph<'a> {
    tensors: Vec<tflite::TensorRef<'a>>,
    buffers: Vec<tflite::BufferRef<'a>>,
    codes: Vec<i32>,
    operators: Vec<tflite::OperatorRef<'a>>,
    input: usize,
    output: usize,
}

fn invalid(e: planus::Error) -> anyhow::Error {
    anyhow!("not a valid TensorFlow Lite flatbuffer: {e}")
}

impl<'a> Graph<'a> {
    fn new(model: tflite::ModelRef<'a>) -> Result<Self> {
        let subgraphs = model.subgraphs().map_err(invalid)?;
        let subgraph = match subgraphs {
            Some(list) if list.len() == 1 => list.get(0).unwrap().map_err(invalid)?,
            Some(list) if list.len() > 1 => bail!(
                "the model has {} subgraphs: tinycnn imports a single graph (no control flow)",
                list.len()
            ),
            _ => bail!("the model has no subgraph"),
        };
        let list = |v: Option<planus::Vector<'a, i32>>| v.map(|v| v.iter().collect::<Vec<_>>());
        let inputs = list(subgraph.inputs().map_err(invalid)?).unwrap_or_default();
        let outputs = list(subgraph.outputs().map_err(invalid)?).unwrap_or_default();
        ensure!(
            inputs.len() == 1 && outputs.len() == 1,
            "the graph has {} inputs and {} outputs: tinycnn's networks have one of each",
            inputs.len(),
            outputs.len()
        );
        let tensors = subgraph
            .tensors()
            .map_err(invalid)?
            .map(|v| v.iter().collect::<Result<Vec<_>, _>>())
            .transpose()
            .map_err(invalid)?
            .unwrap_or_default();
        let buffers = model
            .buffers()
            .map_err(invalid)?
            .map(|v| v.iter().collect::<Result<Vec<_>, _>>())
            .transpose()
            .map_err(invalid)?
            .unwrap_or_default();
        let codes = model
            .operator_codes()
            .map_err(invalid)?
            .map(|v| {
                v.iter()
                    .map(|code| {
                        let code = code?;
                        // The code is the larger of the two fields (codes above 127 only fit
                        // the second).
                        Ok(i32::from(code.deprecated_builtin_code()?).max(code.builtin_code()?))
                    })
                    .collect::<Result<Vec<_>, planus::Error>>()
            })
            .transpose()
            .map_err(invalid)?
            .unwrap_or_default();
        let operators = subgraph
            .operators()
            .map_err(invalid)?
            .map(|v| v.iter().collect::<Result<Vec<_>, _>>())
            .transpose()
            .map_err(invalid)?
            .unwrap_or_default();
        let index = |i: i32| {
            usize::try_from(i)
                .ok()
                .filter(|&i| i < tensors.len())
                .ok_or_else(|| anyhow!("the graph names tensor {i}, which does not exist"))
        };
        Ok(Self {
            input: index(inputs[0])?,
            output: index(outputs[0])?,
            tensors,
            buffers,
            codes,
            operators,
        })
    }

    /// Tensor `index`, with its shape, quantisation and data checked.
    fn tensor(&self, index: i32) -> Result<Tensor<'a>> {
        let position = usize::try_from(index)
            .ok()
            .filter(|&i| i < self.tensors.len())
            .ok_or_else(|| anyhow!("tensor {index} does not exist"))?;
        let tensor = self.tensors[position];
        let shape = tensor
            .shape()
            .map_err(invalid)?
            .map(|v| v.iter().collect::<Vec<i32>>())
            .unwrap_or_default();
        let mut dims = Vec::with_capacity(shape.len());
        let mut values = 1usize;
        for &d in &shape {
            let d = usize::try_from(d).ok().filter(|&d| d >= 1).ok_or_else(|| {
                anyhow!("tensor {position} has the shape {shape:?}: dimensions must be positive")
            })?;
            values = values
                .checked_mul(d)
                .filter(|&v| v <= MAX_TENSOR_VALUES)
                .ok_or_else(|| {
                    anyhow!(
                        "tensor {position} claims the shape {shape:?}, more than the {} values \
                         a tinycnn tensor holds",
                        MAX_TENSOR_VALUES
                    )
                })?;
            dims.push(d);
        }
        let kind = tensor.type_().map_err(invalid)?;
        let quantization = match tensor.quantization().map_err(invalid)? {
            None => None,
            Some(q) => Some(Quantization {
                scales: q
                    .scale()
                    .map_err(invalid)?
                    .map(|v| v.iter().collect())
                    .unwrap_or_default(),
                zero_points: q
                    .zero_point()
                    .map_err(invalid)?
                    .map(|v| v.iter().collect())
                    .unwrap_or_default(),
                dimension: q.quantized_dimension().map_err(invalid)?,
            }),
        };
        let buffer = tensor.buffer().map_err(invalid)? as usize;
        let data = match self.buffers.get(buffer) {
            // Buffer 0 is the empty sentinel; activations have no data.
            Some(b) if buffer != 0 => {
                ensure!(
                    b.offset().map_err(invalid)? == 0,
                    "tensor {position} keeps its data outside the flatbuffer (a model over \
                     2 GB): tinycnn does not read such files"
                );
                b.data().map_err(invalid)?.filter(|d| !d.is_empty())
            }
            Some(_) => None,
            None => bail!("tensor {position} names buffer {buffer}, which does not exist"),
        };
        if let Some(data) = data {
            let element = match kind {
                tensor_type::INT8 => 1,
                tensor_type::INT32 | tensor_type::FLOAT32 => 4,
                other => bail!(
                    "tensor {position} holds {} data: tinycnn reads int8 weights and int32 biases",
                    type_name(other)
                ),
            };
            ensure!(
                data.len() == values * element,
                "tensor {position} ({}) holds {} bytes of data, not the {} its shape needs",
                describe_shape(&dims),
                data.len(),
                values * element
            );
        }
        Ok(Tensor {
            index: position,
            shape: dims,
            kind,
            quantization,
            data,
        })
    }

    fn convert(&self) -> Result<Imported> {
        let mut builder = Builder::default();
        let mut current = self.input;
        let mut left_out = Vec::new();
        let mut logits_tensor = None;
        let mut shape_tensors: Vec<i32> = Vec::new();
        let count = self.operators.len();
        for (position, operator) in self.operators.iter().enumerate() {
            let code = operator
                .opcode_index()
                .map_err(invalid)
                .and_then(|i| {
                    self.codes
                        .get(i as usize)
                        .copied()
                        .ok_or_else(|| anyhow!("it names operator code {i}, which does not exist"))
                })
                .with_context(|| format!("operator {position}"))?;
            let context = || format!("operator {position} ({})", describe_operator(code));
            let inputs: Vec<i32> = operator
                .inputs()
                .map_err(invalid)?
                .map(|v| v.iter().collect())
                .unwrap_or_default();
            let outputs: Vec<i32> = operator
                .outputs()
                .map_err(invalid)?
                .map(|v| v.iter().collect())
                .unwrap_or_default();
            let step = (|| -> Result<usize> {
                ensure!(
                    outputs.len() == 1,
                    "it has {} outputs: tinycnn's layers have one",
                    outputs.len()
                );
                if SHAPE_CODES.contains(&code) {
                    // The converter computes a Keras Flatten's target shape at run time when
                    // the batch size is open (SHAPE, STRIDED_SLICE, PACK into the RESHAPE); the
                    // RESHAPE's output shape says the same, so these are left out. Their
                    // results may feed nothing but other such operators and a RESHAPE's shape.
                    shape_tensors.extend(outputs.iter().copied());
                    left_out.push(format!("{} (operator {position})", describe_operator(code)));
                    return Ok(current);
                }
                ensure!(
                    inputs
                        .first()
                        .is_some_and(|&i| i as usize == current && i >= 0),
                    "it does not take the previous operator's output: tinycnn imports a chain \
                     of operators, each feeding the next"
                );
                let used = if code == op::RESHAPE {
                    &inputs[..1]
                } else {
                    &inputs[..]
                };
                if let Some(t) = used.iter().find(|t| shape_tensors.contains(t)) {
                    bail!("it reads tensor {t}, which a shape computation wrote");
                }
                let input = self.tensor(inputs[0])?;
                let output = self.tensor(outputs[0])?;
                let options = || operator.builtin_options().map_err(invalid);
                // The first layer's input is the network's input.
                let layer = matches!(
                    code,
                    op::CONV_2D | op::MAX_POOL_2D | op::RESHAPE | op::FULLY_CONNECTED
                );
                if layer && builder.started.is_none() {
                    builder.start(&input)?;
                }
                match code {
                    op::QUANTIZE => {
                        ensure!(
                            position == 0,
                            "a QUANTIZE inside the graph: tinycnn takes one quantisation \
                             through the network (only the converter's QUANTIZE of a float \
                             input is left out)"
                        );
                        input.expect_type(tensor_type::FLOAT32, "input")?;
                        left_out.push(format!("QUANTIZE (operator {position})"));
                    }
                    op::DEQUANTIZE => {
                        ensure!(
                            position + 1 == count,
                            "a DEQUANTIZE before the end: tinycnn runs int8 throughout"
                        );
                        left_out.push(format!("DEQUANTIZE (operator {position})"));
                    }
                    op::SOFTMAX => {
                        ensure!(
                            builder.ends_in_dense(),
                            "a SOFTMAX that does not follow a FULLY_CONNECTED: tinycnn ends in \
                             a dense layer's logits"
                        );
                        let rest = self.operators.len() - position - 1;
                        ensure!(
                            rest == 0
                                || (rest == 1
                                    && self.code_at(position + 1) == Some(op::DEQUANTIZE)),
                            "a SOFTMAX before the end of the graph"
                        );
                        logits_tensor.get_or_insert(current);
                        left_out.push(format!("SOFTMAX (operator {position})"));
                    }
                    op::CONV_2D => {
                        let Some(tflite::BuiltinOptionsRef::Conv2DOptions(options)) = options()?
                        else {
                            bail!("it has no Conv2DOptions");
                        };
                        builder.conv(self, &inputs, &output, options)?;
                    }
                    op::MAX_POOL_2D => {
                        let Some(tflite::BuiltinOptionsRef::Pool2DOptions(options)) = options()?
                        else {
                            bail!("it has no Pool2DOptions");
                        };
                        builder.pool(&input, &output, options)?;
                    }
                    op::RESHAPE => builder.reshape(&input, &output)?,
                    op::FULLY_CONNECTED => {
                        let Some(tflite::BuiltinOptionsRef::FullyConnectedOptions(options)) =
                            options()?
                        else {
                            bail!("it has no FullyConnectedOptions");
                        };
                        builder.dense(self, &inputs, &output, options)?;
                        logits_tensor = None;
                    }
                    other => bail!(
                        "{} is not in tinycnn's vocabulary (CONV_2D with a fused ReLU or none, \
                         MAX_POOL_2D 2x2, RESHAPE as the flatten, FULLY_CONNECTED, a final \
                         SOFTMAX, QUANTIZE/DEQUANTIZE at the edges)",
                        describe_operator(other)
                    ),
                }
                Ok(output.index)
            })()
            .with_context(context)?;
            current = step;
        }
        ensure!(
            current == self.output,
            "the graph's output is not the end of its chain of operators"
        );
        let logits_tensor = match (logits_tensor, builder.ends_in_dense()) {
            (Some(t), _) => t,
            (None, true) => current,
            (None, false) => bail!("the graph does not end in a FULLY_CONNECTED layer"),
        };
        let (architecture, file) = builder.finish()?;
        Ok(Imported {
            file,
            architecture,
            left_out,
            logits_tensor,
        })
    }

    fn code_at(&self, position: usize) -> Option<i32> {
        let operator = self.operators.get(position)?;
        let index = operator.opcode_index().ok()?;
        self.codes.get(index as usize).copied()
    }
}

fn describe_shape(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    format!("[{}]", dims.join(", "))
}

/// One layer with weights, as read.
struct Weighted {
    output: QuantParams,
    weight_scales: Vec<f32>,
    weights: Vec<u8>,
    bias: Vec<i32>,
}

/// The network and its tensors, built operator by operator.
#[derive(Default)]
struct Builder {
    /// The input shape and quantisation, once known.
    started: Option<(Shape, QuantParams)>,
    layers: Vec<Layer>,
    weighted: Vec<Weighted>,
    /// The shape after the layers so far: a map, or a vector of this many values.
    map: Option<Shape>,
    flat: Option<usize>,
}

impl Builder {
    fn start(&mut self, input: &Tensor<'_>) -> Result<()> {
        input.expect_type(tensor_type::INT8, "input")?;
        let shape = map_shape(input, "input")?;
        ensure!(
            shape.channels == 1 || shape.channels == 3,
            "the input {} has {} channels: tinycnn takes 1 (grey) or 3 (RGB)",
            input.name(),
            shape.channels
        );
        let quantization = input.activation_quantization("input")?;
        ensure!(
            quantization.scale.to_bits() == QuantParams::INPUT.scale.to_bits()
                && quantization.zero_point == QuantParams::INPUT.zero_point,
            "the input is quantised with scale {} and zero point {}: tinycnn's int8 models take \
             pixels scaled to [0, 1] as scale 1/255, zero point -128 (convert the model with \
             inputs in [0, 1], e.g. a representative dataset of images divided by 255)",
            quantization.scale,
            quantization.zero_point
        );
        self.started = Some((shape, quantization));
        self.map = Some(shape);
        Ok(())
    }

    fn ends_in_dense(&self) -> bool {
        matches!(self.layers.last(), Some(Layer::Dense(_)))
    }

    fn conv(
        &mut self,
        graph: &Graph<'_>,
        inputs: &[i32],
        output: &Tensor<'_>,
        options: tflite::Conv2DOptionsRef<'_>,
    ) -> Result<()> {
        let Some(map) = self.map else {
            bail!("a convolution after the flatten");
        };
        ensure!(inputs.len() >= 2, "it has no weights");
        let weights = graph.tensor(inputs[1])?;
        weights.expect_type(tensor_type::INT8, "weights")?;
        let [filters, height, width, channels] = weights.shape[..] else {
            bail!(
                "its weights {} are not 4-D (output channels, rows, columns, input channels)",
                weights.name()
            );
        };
        ensure!(
            channels == map.channels,
            "its weights {} take {channels} input channels; its input has {}",
            weights.name(),
            map.channels
        );
        ensure!(
            height == width && matches!(height, 1 | 3 | 5),
            "a {height}x{width} kernel: tinycnn's convolutions are 1x1, 3x3 or 5x5"
        );
        let (stride_w, stride_h) = (
            options.stride_w().map_err(invalid)?,
            options.stride_h().map_err(invalid)?,
        );
        ensure!(
            stride_w == 1 && stride_h == 1,
            "stride {stride_h}x{stride_w}: tinycnn's convolutions have stride 1"
        );
        let (dilation_w, dilation_h) = (
            options.dilation_w_factor().map_err(invalid)?,
            options.dilation_h_factor().map_err(invalid)?,
        );
        ensure!(
            dilation_w == 1 && dilation_h == 1,
            "dilation {dilation_h}x{dilation_w}: tinycnn's convolutions are not dilated"
        );
        let padding = match options.padding().map_err(invalid)? {
            option::PADDING_SAME => Padding::Same,
            option::PADDING_VALID => Padding::Valid,
            other => bail!("padding {other}: tinycnn has SAME and VALID"),
        };
        let activation = activation(options.fused_activation_function().map_err(invalid)?)?;
        let filters_u16 = u16::try_from(filters).map_err(|_| anyhow!("{filters} filters"))?;
        let conv = Conv {
            kernel: height as u8,
            padding,
            filters: filters_u16,
            activation,
        };
        let expected = conv
            .output(map)
            .ok_or_else(|| anyhow!("a {height}x{width} kernel larger than its input"))?;
        check_output_shape(
            output,
            &[1, expected.height, expected.width, expected.channels],
        )?;
        let weighted = self.weighted_layer(graph, inputs, &weights, output, filters)?;
        self.layers.push(Layer::Conv(conv));
        self.weighted.push(weighted);
        self.map = Some(expected);
        Ok(())
    }

    fn pool(
        &mut self,
        input: &Tensor<'_>,
        output: &Tensor<'_>,
        options: tflite::Pool2DOptionsRef<'_>,
    ) -> Result<()> {
        let Some(map) = self.map else {
            bail!("a pool after the flatten");
        };
        let filter = (
            options.filter_height().map_err(invalid)?,
            options.filter_width().map_err(invalid)?,
        );
        let stride = (
            options.stride_h().map_err(invalid)?,
            options.stride_w().map_err(invalid)?,
        );
        ensure!(
            filter == (2, 2) && stride == (2, 2),
            "a {}x{} pool with stride {}x{}: tinycnn's max-pools are 2x2 with stride 2",
            filter.0,
            filter.1,
            stride.0,
            stride.1
        );
        let padding = options.padding().map_err(invalid)?;
        // SAME padding pads nothing on even sides: there it is VALID.
        ensure!(
            padding == option::PADDING_VALID
                || (map.height % 2 == 0 && map.width % 2 == 0 && padding == option::PADDING_SAME),
            "SAME padding on the odd-sized map {}x{}: tinycnn's pools drop the last row and column",
            map.height,
            map.width
        );
        ensure!(
            options.fused_activation_function().map_err(invalid)? == option::ACTIVATION_NONE,
            "a fused activation after the pool"
        );
        let (in_q, out_q) = (
            input.activation_quantization("input")?,
            output.activation_quantization("output")?,
        );
        ensure!(
            in_q == out_q,
            "it requantises (input scale {} zero point {}, output scale {} zero point {}): \
             tinycnn's pools keep their input's quantisation",
            in_q.scale,
            in_q.zero_point,
            out_q.scale,
            out_q.zero_point
        );
        let pooled = Shape::new(map.height / 2, map.width / 2, map.channels);
        check_output_shape(output, &[1, pooled.height, pooled.width, pooled.channels])?;
        self.layers.push(Layer::MaxPool);
        self.map = Some(pooled);
        Ok(())
    }

    fn reshape(&mut self, input: &Tensor<'_>, output: &Tensor<'_>) -> Result<()> {
        let values = input.values();
        ensure!(
            output.values() == values && output.shape.iter().filter(|&&d| d != 1).count() <= 1,
            "a RESHAPE to {}: tinycnn's RESHAPE is the flatten, to [1, {values}]",
            describe_shape(&output.shape)
        );
        ensure!(
            input.activation_quantization("input")? == output.activation_quantization("output")?,
            "it requantises: a flatten keeps its input's quantisation"
        );
        if self.map.take().is_some() {
            self.layers.push(Layer::Flatten);
            self.flat = Some(values);
        }
        Ok(())
    }

    fn dense(
        &mut self,
        graph: &Graph<'_>,
        inputs: &[i32],
        output: &Tensor<'_>,
        options: tflite::FullyConnectedOptionsRef<'_>,
    ) -> Result<()> {
        // A FULLY_CONNECTED on a map flattens it in the same order as a RESHAPE.
        if let Some(map) = self.map.take() {
            self.layers.push(Layer::Flatten);
            self.flat = Some(map.values());
        }
        let length = self.flat.unwrap_or(0);
        ensure!(inputs.len() >= 2, "it has no weights");
        let weights = graph.tensor(inputs[1])?;
        weights.expect_type(tensor_type::INT8, "weights")?;
        let [units, fan_in] = weights.shape[..] else {
            bail!("its weights {} are not 2-D (units, inputs)", weights.name());
        };
        ensure!(
            fan_in == length,
            "its weights {} take {fan_in} inputs; its input has {length}",
            weights.name()
        );
        ensure!(
            options.weights_format().map_err(invalid)? == 0,
            "shuffled weights (a weights_format other than DEFAULT)"
        );
        ensure!(
            !options.asymmetric_quantize_inputs().map_err(invalid)?,
            "dynamic-range quantisation (asymmetric_quantize_inputs): tinycnn imports \
             fully-integer models"
        );
        let activation = activation(options.fused_activation_function().map_err(invalid)?)?;
        let units_u16 = u16::try_from(units).map_err(|_| anyhow!("{units} units"))?;
        let output_values = output.values();
        ensure!(
            output_values == units,
            "its output {} does not hold its {units} units",
            output.name()
        );
        let weighted = self.weighted_layer(graph, inputs, &weights, output, units)?;
        self.layers.push(Layer::Dense(Dense {
            units: units_u16,
            activation,
        }));
        self.weighted.push(weighted);
        self.flat = Some(units);
        Ok(())
    }

    /// The tensors of a convolution or dense layer with `outputs` output channels.
    fn weighted_layer(
        &self,
        graph: &Graph<'_>,
        inputs: &[i32],
        weights: &Tensor<'_>,
        output: &Tensor<'_>,
        outputs: usize,
    ) -> Result<Weighted> {
        ensure!(
            self.layers.len() < MAX_LAYERS,
            "more than {MAX_LAYERS} layers: tinycnn's networks have at most {MAX_LAYERS}"
        );
        let weight_scales = weights.weight_scales(outputs)?;
        let weight_bytes = weights.int8_weights()?;
        let bias = match inputs.get(2) {
            Some(&index) if index >= 0 => {
                let bias = graph.tensor(index)?;
                bias.expect_type(tensor_type::INT32, "bias")?;
                ensure!(
                    bias.values() == outputs,
                    "its bias {} does not have one value per output ({outputs})",
                    bias.name()
                );
                let data = bias
                    .data
                    .ok_or_else(|| anyhow!("its bias {} has no data", bias.name()))?;
                data.chunks_exact(4)
                    .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect()
            }
            // An optional bias left out: zeros.
            _ => vec![0; outputs],
        };
        output.expect_type(tensor_type::INT8, "output")?;
        Ok(Weighted {
            output: output.activation_quantization("output")?,
            weight_scales,
            weights: weight_bytes,
            bias,
        })
    }

    fn finish(self) -> Result<(Architecture, Vec<u8>)> {
        let Some((input_shape, input_quantization)) = self.started else {
            bail!("the graph has no layers");
        };
        let architecture = Architecture::new(input_shape, &self.layers)
            .map_err(|e| anyhow!("the graph's network is not one tinycnn runs: {e}"))?;
        let mut tensors = Vec::with_capacity(self.weighted.len());
        let mut input = input_quantization;
        for layer in &self.weighted {
            let mut multipliers = Vec::with_capacity(layer.bias.len() * 4);
            let mut shifts = Vec::with_capacity(layer.bias.len());
            for &weight_scale in &layer.weight_scales {
                // As TensorFlow Lite derives them from the scales (in double precision).
                let real = f64::from(input.scale) * f64::from(weight_scale)
                    / f64::from(layer.output.scale);
                let (multiplier, shift) = quantize_multiplier(real);
                multipliers.extend(multiplier.to_le_bytes());
                shifts.push(shift as i8 as u8);
            }
            tensors.push((
                layer
                    .weight_scales
                    .iter()
                    .flat_map(|s| s.to_le_bytes())
                    .collect::<Vec<u8>>(),
                layer
                    .bias
                    .iter()
                    .flat_map(|b| b.to_le_bytes())
                    .collect::<Vec<u8>>(),
                multipliers,
                shifts,
            ));
            input = layer.output;
        }
        let records: Vec<Int8LayerRecord<'_>> = self
            .weighted
            .iter()
            .zip(&tensors)
            .map(
                |(layer, (weight_scales, bias, multipliers, shifts))| Int8LayerRecord {
                    output: layer.output,
                    weight_scales,
                    weights: &layer.weights,
                    bias,
                    multipliers,
                    shifts,
                },
            )
            .collect();
        let file = Int8Record {
            architecture,
            input: QuantParams::INPUT,
            layers: &records,
        }
        .to_vec()
        .context("encoding the int8 model")?;
        // Everything the loader checks (shifts in range, lengths) is checked here too.
        Int8Model::from_bytes(&file)
            .map_err(|e| anyhow!("the converted model does not load: {e}"))?;
        Ok((architecture, file))
    }
}

fn activation(code: i8) -> Result<Activation> {
    match code {
        option::ACTIVATION_NONE => Ok(Activation::None),
        option::ACTIVATION_RELU => Ok(Activation::Relu),
        2 => bail!("a fused RELU_N1_TO_1: tinycnn's layers have ReLU or none"),
        3 => bail!("a fused RELU6: tinycnn's layers have ReLU or none"),
        4 => bail!("a fused TANH: tinycnn's layers have ReLU or none"),
        other => bail!("fused activation {other}: tinycnn's layers have ReLU or none"),
    }
}

/// The height, width and channels of a 4-D NHWC tensor with a batch of 1.
fn map_shape(tensor: &Tensor<'_>, role: &str) -> Result<Shape> {
    match tensor.shape[..] {
        [1, height, width, channels] => Ok(Shape::new(height, width, channels)),
        _ => bail!(
            "its {role}, {}, is not a single NHWC image ([1, height, width, channels])",
            tensor.name()
        ),
    }
}

fn check_output_shape(output: &Tensor<'_>, expected: &[usize]) -> Result<()> {
    ensure!(
        output.shape == expected,
        "its output {} should be {}",
        output.name(),
        describe_shape(expected)
    );
    Ok(())
}
