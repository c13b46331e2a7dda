//! `.tflite` to tinycnn int8 model.

use anyhow::{Context, Result, anyhow, bail, ensure};
use planus::ReadAsRoot;
use tinycnn::Int8Model;
use tinycnn::arch::{
    Activation, Architecture, Conv, Dense, Depthwise, Layer, MAX_DEPTH_MULTIPLIER, MAX_KERNEL_SIDE,
    MAX_LAYERS, MAX_TENSOR_VALUES, OutputKind, Padding, Pool, PoolKind, Shape, Shortcut, Window,
};
use tinycnn::format::{Int8LayerRecord, Int8Record, QuantParams, SOFTMAX_OUTPUT, VERSION_3};
use tinycnn::quant;

use super::{FILE_IDENTIFIER, describe_operator, op, option, tensor_type, tflite, type_name};
use crate::model_files::quantize_multiplier;

/// The largest `.tflite` file [`import`] reads: far above any network tinycnn can run (its
/// tensors are limited to 16 M values each), and small enough to read into memory.
pub const MAX_FILE_BYTES: u64 = 512 << 20;

/// A TensorFlow Lite model turned into a tinycnn int8 model.
#[derive(Clone, Debug)]
pub struct Imported {
    /// The tinycnn int8 model file (format version 3, TensorFlow Lite Micro's arithmetic).
    pub file: Vec<u8>,
    /// Its network.
    pub architecture: Architecture,
    /// The graph's operators the model leaves out, as `QUANTIZE (operator 0)`: the float
    /// edges and the shape computations of a flatten.
    pub left_out: Vec<String>,
    /// The graph's tensor that holds what the tinycnn model outputs (the graph's output, or
    /// the input of a final `DEQUANTIZE`), for comparisons with TensorFlow Lite.
    pub output_tensor: usize,
}

/// Reads a fully-integer TensorFlow Lite model and writes the tinycnn int8 model that computes
/// the same bytes; see the [module](super) for what it accepts. `output_kind` says whether
/// the output is classes or values; `None` reads it as classes where it can be (a last
/// dense layer without activation, with or without a softmax after it).
pub fn import(bytes: &[u8], output_kind: Option<OutputKind>) -> Result<Imported> {
    ensure!(
        bytes.len() >= 8 && &bytes[4..8] == FILE_IDENTIFIER,
        "not a TensorFlow Lite model: no \"TFL3\" file identifier at bytes 4..8"
    );
    let model = tflite::ModelRef::read_as_root(bytes)
        .map_err(|e| anyhow!("not a valid TensorFlow Lite flatbuffer: {e}"))?;
    let graph = Graph::new(model)?;
    graph.convert(output_kind)
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

    /// The per-output-channel scales of symmetric int8 weights whose dimension `dimension`
    /// counts the outputs.
    fn weight_scales(&self, outputs: usize, dimension: i32) -> Result<Vec<f32>> {
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
            n if n == outputs && quantization.dimension == dimension => quantization.scales.clone(),
            n => bail!(
                "its weights, {}, have {n} scales along dimension {}: tinycnn needs one per \
                 output channel (dimension {dimension}) or one for the tensor",
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

    /// The operators with their codes and tensors, in the graph's order.
    fn operations(&self) -> Result<Vec<Operation<'a>>> {
        self.operators
            .iter()
            .enumerate()
            .map(|(position, operator)| {
                let code = operator
                    .opcode_index()
                    .map_err(invalid)
                    .and_then(|i| {
                        self.codes.get(i as usize).copied().ok_or_else(|| {
                            anyhow!("it names operator code {i}, which does not exist")
                        })
                    })
                    .with_context(|| format!("operator {position}"))?;
                let list = |v: Option<planus::Vector<'a, i32>>| -> Vec<i32> {
                    v.map(|v| v.iter().collect()).unwrap_or_default()
                };
                let inputs = list(operator.inputs().map_err(invalid)?);
                let outputs = list(operator.outputs().map_err(invalid)?);
                Ok(Operation {
                    position,
                    code,
                    inputs,
                    outputs,
                    operator: *operator,
                })
            })
            .collect()
    }

    fn convert(&self, output_kind: Option<OutputKind>) -> Result<Imported> {
        let operations = self.operations()?;
        let mut left_out = Vec::new();
        // The converter computes a Keras Flatten's target shape at run time when the batch
        // size is open (SHAPE, STRIDED_SLICE, PACK into the RESHAPE); the RESHAPE's output
        // shape says the same, so these are left out. Their results may feed nothing but
        // other such operators and a RESHAPE's shape.
        let mut shape_tensors: Vec<i32> = Vec::new();
        for operation in &operations {
            if SHAPE_CODES.contains(&operation.code) {
                shape_tensors.extend(operation.outputs.iter().copied());
                left_out.push(operation.describe());
            }
        }
        // Who reads each activation: the first input, and both of an ADD's.
        let mut readers: Vec<Vec<usize>> = vec![Vec::new(); self.tensors.len()];
        let mut to_visit = 0;
        for (index, operation) in operations.iter().enumerate() {
            if SHAPE_CODES.contains(&operation.code) {
                continue;
            }
            to_visit += 1;
            let mut step = || -> Result<()> {
                ensure!(
                    operation.outputs.len() == 1,
                    "it has {} outputs: tinycnn's layers have one",
                    operation.outputs.len()
                );
                let used = match operation.code {
                    op::RESHAPE => &operation.inputs[..operation.inputs.len().min(1)],
                    _ => &operation.inputs[..],
                };
                if let Some(t) = used.iter().find(|t| shape_tensors.contains(t)) {
                    bail!("it reads tensor {t}, which a shape computation wrote");
                }
                let activations = if operation.code == op::ADD { 2 } else { 1 };
                ensure!(
                    operation.inputs.len() >= activations,
                    "it has {} inputs",
                    operation.inputs.len()
                );
                for &tensor in &operation.inputs[..activations] {
                    let slot = usize::try_from(tensor)
                        .ok()
                        .and_then(|t| readers.get_mut(t))
                        .ok_or_else(|| anyhow!("it reads tensor {tensor}, which does not exist"))?;
                    slot.push(index);
                }
                Ok(())
            };
            step().with_context(|| operation.describe())?;
        }
        let mut walk = Walk {
            graph: self,
            operations: &operations,
            readers: &readers,
            builder: Builder::default(),
            left_out,
            visited: 0,
        };
        let mut current = self.input;
        loop {
            let next = walk.readers.get(current).map_or(&[][..], Vec::as_slice);
            current = match *next {
                [] => break,
                [one] => walk.layer(one, current)?,
                [first, second] => walk.residual(current, [first, second])?,
                _ => bail!(
                    "tensor {current} feeds {} operators: tinycnn's residual blocks fork in two",
                    next.len()
                ),
            };
        }
        ensure!(
            current == self.output,
            "the graph's output is not the end of its chain of operators"
        );
        ensure!(
            walk.visited == to_visit,
            "{} of the graph's operators are not on the path from its input to its output",
            to_visit - walk.visited
        );
        let Walk {
            builder, left_out, ..
        } = walk;
        let output_tensor = builder.output_tensor.unwrap_or(current);
        let (architecture, file) = builder.finish(output_kind)?;
        Ok(Imported {
            file,
            architecture,
            left_out,
            output_tensor,
        })
    }
}

/// One operator of the graph, decoded.
struct Operation<'a> {
    position: usize,
    code: i32,
    inputs: Vec<i32>,
    outputs: Vec<i32>,
    operator: tflite::OperatorRef<'a>,
}

impl Operation<'_> {
    fn describe(&self) -> String {
        format!(
            "operator {} ({})",
            self.position,
            describe_operator(self.code)
        )
    }

    fn output(&self) -> usize {
        self.outputs.first().map_or(usize::MAX, |&t| t as usize)
    }
}

/// A walk from the graph's input to its output, turning operators into layers.
struct Walk<'g, 'a> {
    graph: &'g Graph<'a>,
    operations: &'g [Operation<'a>],
    readers: &'g [Vec<usize>],
    builder: Builder,
    left_out: Vec<String>,
    visited: usize,
}

impl Walk<'_, '_> {
    fn readers_of(&self, tensor: usize) -> &[usize] {
        self.readers.get(tensor).map_or(&[][..], Vec::as_slice)
    }

    /// The chain of operators from `first` up to the ADD it reaches (not included), and that
    /// ADD; `None` for the ADD when the chain ends without one.
    fn branch(&self, first: usize) -> Result<(Vec<usize>, usize)> {
        let mut chain = Vec::new();
        let mut index = first;
        loop {
            let operation = &self.operations[index];
            if operation.code == op::ADD {
                return Ok((chain, index));
            }
            chain.push(index);
            match *self.readers_of(operation.output()) {
                [next] => index = next,
                [] => bail!(
                    "{} ends a branch that never rejoins: a residual block's two branches \
                     meet at an ADD",
                    operation.describe()
                ),
                _ => bail!(
                    "{} forks inside a residual block: tinycnn's blocks hold one chain of \
                     layers (no nested blocks)",
                    operation.describe()
                ),
            }
        }
    }

    /// A residual block starting at tensor `fork`, read by the two operators `starts`.
    fn residual(&mut self, fork: usize, starts: [usize; 2]) -> Result<usize> {
        let (first, first_add) = self.branch(starts[0])?;
        let (second, second_add) = self.branch(starts[1])?;
        ensure!(
            first_add == second_add,
            "the two branches from tensor {fork} end at different ADDs ({} and {})",
            self.operations[first_add].describe(),
            self.operations[second_add].describe()
        );
        let add = first_add;
        let projection = |chain: &[usize]| match chain {
            [only] => {
                let operation = &self.operations[*only];
                operation.code == op::CONV_2D && self.graph.is_pointwise(operation)
            }
            _ => false,
        };
        let second_input = self.operations[add].inputs.get(1).map(|&t| t as usize);
        let (body, shortcut) = if first.is_empty() {
            (second, None)
        } else if second.is_empty() {
            (first, None)
        } else if projection(&second)
            && (!projection(&first) || second_input == Some(self.operations[second[0]].output()))
        {
            (first, Some(second[0]))
        } else if projection(&first) {
            (second, Some(first[0]))
        } else {
            bail!(
                "the branches from tensor {fork} to {} are both layers: tinycnn's residual \
                 blocks add their layers' output to the block's input or to a 1x1 convolution \
                 of it",
                self.operations[add].describe()
            );
        };
        ensure!(
            !body.is_empty(),
            "{} adds tensor {fork} to itself",
            self.operations[add].describe()
        );
        let graph = self.graph;
        let block_input = graph.tensor(fork as i32)?;
        match shortcut {
            None => self.builder.residual_identity(&block_input)?,
            Some(index) => {
                let operation = &self.operations[index];
                (|| {
                    let Some(tflite::BuiltinOptionsRef::Conv2DOptions(options)) =
                        operation.operator.builtin_options().map_err(invalid)?
                    else {
                        bail!("it has no Conv2DOptions");
                    };
                    let output = graph.tensor(operation.outputs[0])?;
                    self.builder.residual_projection(
                        graph,
                        &operation.inputs,
                        &block_input,
                        &output,
                        options,
                    )
                })()
                .with_context(|| operation.describe())?;
                self.visited += 1;
            }
        }
        let mut current = fork;
        for index in body {
            current = self.layer(index, current)?;
        }
        let operation = &self.operations[add];
        let shortcut_tensor = match shortcut {
            None => fork,
            Some(index) => self.operations[index].output(),
        };
        (|| {
            let Some(tflite::BuiltinOptionsRef::AddOptions(options)) =
                operation.operator.builtin_options().map_err(invalid)?
            else {
                bail!("it has no AddOptions");
            };
            let body = graph.tensor(current as i32)?;
            let kept = graph.tensor(shortcut_tensor as i32)?;
            let output = graph.tensor(operation.outputs[0])?;
            self.builder.add(&body, &kept, &output, options)
        })()
        .with_context(|| operation.describe())?;
        self.visited += 1;
        Ok(operation.output())
    }

    /// Operator `index`, which reads `current`, as a layer; returns its output tensor.
    fn layer(&mut self, index: usize, current: usize) -> Result<usize> {
        let graph = self.graph;
        let operation = &self.operations[index];
        let code = operation.code;
        let count = self.operations.len();
        self.visited += 1;
        let mut step = || -> Result<()> {
            ensure!(
                operation
                    .inputs
                    .first()
                    .is_some_and(|&t| t as usize == current),
                "it does not take the previous layer's output as its first input"
            );
            let input = graph.tensor(operation.inputs[0])?;
            let output = graph.tensor(operation.outputs[0])?;
            let options = || operation.operator.builtin_options().map_err(invalid);
            let builder = &mut self.builder;
            let layer = !matches!(code, op::QUANTIZE | op::DEQUANTIZE);
            if layer && builder.started.is_none() {
                builder.start(&input)?;
            }
            match code {
                op::QUANTIZE => {
                    ensure!(
                        current == graph.input,
                        "a QUANTIZE inside the graph: tinycnn takes one quantisation through \
                         the network (only the converter's QUANTIZE of a float input is left \
                         out)"
                    );
                    input.expect_type(tensor_type::FLOAT32, "input")?;
                    self.left_out.push(operation.describe());
                }
                op::DEQUANTIZE => {
                    ensure!(
                        operation.output() == graph.output,
                        "a DEQUANTIZE before the end: tinycnn runs int8 throughout"
                    );
                    builder.output_tensor = Some(current);
                    self.left_out.push(operation.describe());
                }
                op::ADD => bail!(
                    "an ADD of tensors that do not fork from one: tinycnn's ADD ends a \
                     residual block"
                ),
                op::SOFTMAX => {
                    let Some(tflite::BuiltinOptionsRef::SoftmaxOptions(options)) = options()?
                    else {
                        bail!("it has no SoftmaxOptions");
                    };
                    let last = operation.output() == graph.output
                        || (operation.position + 2 == count
                            && graph.code_at(operation.position + 1) == Some(op::DEQUANTIZE));
                    ensure!(last, "a SOFTMAX before the end of the graph");
                    builder.softmax(&input, &output, options)?;
                }
                op::CONV_2D => {
                    let Some(tflite::BuiltinOptionsRef::Conv2DOptions(options)) = options()? else {
                        bail!("it has no Conv2DOptions");
                    };
                    builder.conv(graph, &operation.inputs, &input, &output, options)?;
                }
                op::DEPTHWISE_CONV_2D => {
                    let Some(tflite::BuiltinOptionsRef::DepthwiseConv2DOptions(options)) =
                        options()?
                    else {
                        bail!("it has no DepthwiseConv2DOptions");
                    };
                    builder.depthwise(graph, &operation.inputs, &input, &output, options)?;
                }
                op::MAX_POOL_2D | op::AVERAGE_POOL_2D => {
                    let Some(tflite::BuiltinOptionsRef::Pool2DOptions(options)) = options()? else {
                        bail!("it has no Pool2DOptions");
                    };
                    let kind = if code == op::MAX_POOL_2D {
                        PoolKind::Max
                    } else {
                        PoolKind::Average
                    };
                    builder.pool(kind, &input, &output, options)?;
                }
                op::RESHAPE => builder.reshape(&input, &output)?,
                op::FULLY_CONNECTED => {
                    let Some(tflite::BuiltinOptionsRef::FullyConnectedOptions(options)) =
                        options()?
                    else {
                        bail!("it has no FullyConnectedOptions");
                    };
                    builder.dense(graph, &operation.inputs, &input, &output, options)?;
                }
                other => bail!(
                    "{} is not in tinycnn's vocabulary (CONV_2D, DEPTHWISE_CONV_2D, \
                     MAX_POOL_2D, AVERAGE_POOL_2D, ADD closing a residual block, RESHAPE as \
                     the flatten, FULLY_CONNECTED, a final SOFTMAX, QUANTIZE/DEQUANTIZE at the \
                     edges; fused ReLU, ReLU6 or none)",
                    describe_operator(other)
                ),
            }
            Ok(())
        };
        step().with_context(|| operation.describe())?;
        Ok(operation.output())
    }
}

impl Graph<'_> {
    /// Whether a CONV_2D has a 1x1 kernel (a residual block's projection).
    fn is_pointwise(&self, operation: &Operation<'_>) -> bool {
        operation
            .inputs
            .get(1)
            .and_then(|&weights| self.tensor(weights).ok())
            .is_some_and(|weights| matches!(weights.shape[..], [_, 1, 1, _]))
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

/// What a layer's record is made from: the quantisation of the tensors around it, as the
/// graph gives them (TensorFlow Lite derives its integer constants from these), and its
/// tensors.
enum Pending {
    Weighted {
        input: QuantParams,
        layer: Weighted,
    },
    Add {
        inputs: [QuantParams; 2],
        output: QuantParams,
    },
    Softmax {
        input: QuantParams,
        beta: f32,
    },
}

/// A record's owned tensors: output quantisation, weight scales, weights, bias, multipliers,
/// shifts.
type RecordTensors = (QuantParams, Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>);

/// The network and its tensors, built operator by operator.
#[derive(Default)]
struct Builder {
    /// The input shape and quantisation, once known.
    started: Option<(Shape, QuantParams)>,
    layers: Vec<Layer>,
    records: Vec<Pending>,
    /// The shape after the layers so far: a map, or a vector of this many values.
    map: Option<Shape>,
    flat: Option<usize>,
    /// The shortcut of the residual block open now.
    shortcut: Option<Shape>,
    /// The tensor the model's output is (before a final DEQUANTIZE).
    output_tensor: Option<usize>,
}

/// `[1, height, width, channels]`, or `[1, n]` for a vector.
fn map_or_vector(tensor: &Tensor<'_>, role: &str) -> Result<Shape> {
    match tensor.shape[..] {
        [1, height, width, channels] => Ok(Shape::new(height, width, channels)),
        [1, values] => Ok(Shape::vector(values)),
        _ => bail!(
            "its {role}, {}, is neither an NHWC map ([1, height, width, channels]) nor a \
             vector ([1, n])",
            tensor.name()
        ),
    }
}

fn padding(code: i8) -> Result<Padding> {
    match code {
        option::PADDING_SAME => Ok(Padding::Same),
        option::PADDING_VALID => Ok(Padding::Valid),
        other => bail!("padding {other}: tinycnn has SAME and VALID"),
    }
}

/// A stride or window side as the description holds it.
fn side(value: i32, what: &str) -> Result<u8> {
    u8::try_from(value)
        .ok()
        .filter(|&v| v >= 1)
        .ok_or_else(|| anyhow!("{what} {value}: tinycnn takes 1 to 255"))
}

impl Builder {
    fn start(&mut self, input: &Tensor<'_>) -> Result<()> {
        input.expect_type(tensor_type::INT8, "input")?;
        let shape = map_or_vector(input, "input")?;
        let quantization = input.activation_quantization("input")?;
        self.started = Some((shape, quantization));
        if shape.is_vector() && input.shape.len() == 2 {
            self.flat = Some(shape.channels);
        } else {
            self.map = Some(shape);
        }
        Ok(())
    }

    fn push(&mut self, layer: Layer) -> Result<()> {
        ensure!(
            self.layers.len() < MAX_LAYERS,
            "more than {MAX_LAYERS} layers: tinycnn's networks have at most {MAX_LAYERS}"
        );
        self.layers.push(layer);
        Ok(())
    }

    fn map(&self, what: &str) -> Result<Shape> {
        self.map
            .ok_or_else(|| anyhow!("a {what} on a vector: it works on maps"))
    }

    /// The window of a convolution or depthwise convolution, checked.
    fn conv_window(
        height: usize,
        width: usize,
        strides: (i32, i32),
        dilations: (i32, i32),
        padding_code: i8,
    ) -> Result<Window> {
        ensure!(
            dilations == (1, 1),
            "dilation {}x{}: tinycnn's convolutions are not dilated",
            dilations.0,
            dilations.1
        );
        ensure!(
            (1..=MAX_KERNEL_SIDE).contains(&height) && (1..=MAX_KERNEL_SIDE).contains(&width),
            "a {height}x{width} kernel: tinycnn's kernels have sides 1 to {MAX_KERNEL_SIDE}"
        );
        ensure!(
            matches!(strides.0, 1 | 2) && matches!(strides.1, 1 | 2),
            "stride {}x{}: tinycnn's convolutions have stride 1 or 2 on each axis",
            strides.0,
            strides.1
        );
        Ok(Window {
            height: height as u8,
            width: width as u8,
            stride_height: strides.0 as u8,
            stride_width: strides.1 as u8,
            padding: padding(padding_code)?,
        })
    }

    fn conv(
        &mut self,
        graph: &Graph<'_>,
        inputs: &[i32],
        input: &Tensor<'_>,
        output: &Tensor<'_>,
        options: tflite::Conv2DOptionsRef<'_>,
    ) -> Result<()> {
        let map = self.map("convolution")?;
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
        let window = Self::conv_window(
            height,
            width,
            (
                options.stride_h().map_err(invalid)?,
                options.stride_w().map_err(invalid)?,
            ),
            (
                options.dilation_h_factor().map_err(invalid)?,
                options.dilation_w_factor().map_err(invalid)?,
            ),
            options.padding().map_err(invalid)?,
        )?;
        let activation = activation(options.fused_activation_function().map_err(invalid)?)?;
        let filters_u16 = u16::try_from(filters).map_err(|_| anyhow!("{filters} filters"))?;
        let conv = Conv {
            window,
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
        let layer = weighted_layer(graph, inputs, &weights, output, filters, 0)?;
        self.push(Layer::Conv(conv))?;
        self.records.push(Pending::Weighted {
            input: input.activation_quantization("input")?,
            layer,
        });
        self.map = Some(expected);
        Ok(())
    }

    fn depthwise(
        &mut self,
        graph: &Graph<'_>,
        inputs: &[i32],
        input: &Tensor<'_>,
        output: &Tensor<'_>,
        options: tflite::DepthwiseConv2DOptionsRef<'_>,
    ) -> Result<()> {
        let map = self.map("depthwise convolution")?;
        ensure!(inputs.len() >= 2, "it has no weights");
        let weights = graph.tensor(inputs[1])?;
        weights.expect_type(tensor_type::INT8, "weights")?;
        let [1, height, width, outputs] = weights.shape[..] else {
            bail!(
                "its weights {} are not [1, rows, columns, output channels]",
                weights.name()
            );
        };
        ensure!(
            outputs % map.channels == 0,
            "its weights {} give {outputs} output channels, not a multiple of its {} input \
             channels",
            weights.name(),
            map.channels
        );
        let multiplier = outputs / map.channels;
        let stated = options.depth_multiplier().map_err(invalid)?;
        ensure!(
            stated <= 0 || stated as usize == multiplier,
            "a depth multiplier of {stated}, but its weights give {multiplier}"
        );
        ensure!(
            (1..=MAX_DEPTH_MULTIPLIER).contains(&multiplier),
            "a depth multiplier of {multiplier}: tinycnn takes 1 to {MAX_DEPTH_MULTIPLIER}"
        );
        let window = Self::conv_window(
            height,
            width,
            (
                options.stride_h().map_err(invalid)?,
                options.stride_w().map_err(invalid)?,
            ),
            (
                options.dilation_h_factor().map_err(invalid)?,
                options.dilation_w_factor().map_err(invalid)?,
            ),
            options.padding().map_err(invalid)?,
        )?;
        let depthwise = Depthwise {
            window,
            multiplier: multiplier as u8,
            activation: activation(options.fused_activation_function().map_err(invalid)?)?,
        };
        let (out_height, out_width) = window
            .output(map)
            .ok_or_else(|| anyhow!("a {height}x{width} kernel larger than its input"))?;
        check_output_shape(output, &[1, out_height, out_width, outputs])?;
        // TensorFlow Lite's layout is tinycnn's ([rows][columns][output channels]), with one
        // weight scale per output channel along the last dimension.
        let layer = weighted_layer(graph, inputs, &weights, output, outputs, 3)?;
        self.push(Layer::Depthwise(depthwise))?;
        self.records.push(Pending::Weighted {
            input: input.activation_quantization("input")?,
            layer,
        });
        self.map = Some(Shape::new(out_height, out_width, outputs));
        Ok(())
    }

    fn pool(
        &mut self,
        kind: PoolKind,
        input: &Tensor<'_>,
        output: &Tensor<'_>,
        options: tflite::Pool2DOptionsRef<'_>,
    ) -> Result<()> {
        let map = self.map("pool")?;
        let window = Window {
            height: side(
                options.filter_height().map_err(invalid)?,
                "a window side of",
            )?,
            width: side(options.filter_width().map_err(invalid)?, "a window side of")?,
            stride_height: side(options.stride_h().map_err(invalid)?, "a stride of")?,
            stride_width: side(options.stride_w().map_err(invalid)?, "a stride of")?,
            padding: padding(options.padding().map_err(invalid)?)?,
        };
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
        let (height, width) = window.output(map).ok_or_else(|| {
            anyhow!(
                "a {}x{} window larger than its input",
                window.height,
                window.width
            )
        })?;
        check_output_shape(output, &[1, height, width, map.channels])?;
        // The tutorial's pool is a 2x2 max-pool with stride 2; on even sides SAME pads
        // nothing and is the same pool.
        let tutorial = kind == PoolKind::Max
            && (
                window.height,
                window.width,
                window.stride_height,
                window.stride_width,
            ) == (2, 2, 2, 2)
            && (window.padding == Padding::Valid || (map.height % 2 == 0 && map.width % 2 == 0));
        let layer = if tutorial {
            Layer::MaxPool
        } else {
            Layer::Pool(Pool { kind, window })
        };
        self.push(layer)?;
        self.map = Some(Shape::new(height, width, map.channels));
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
            self.push(Layer::Flatten)?;
            self.flat = Some(values);
        }
        Ok(())
    }

    fn dense(
        &mut self,
        graph: &Graph<'_>,
        inputs: &[i32],
        input: &Tensor<'_>,
        output: &Tensor<'_>,
        options: tflite::FullyConnectedOptionsRef<'_>,
    ) -> Result<()> {
        // A FULLY_CONNECTED on a map flattens it in the same order as a RESHAPE.
        if let Some(map) = self.map.take() {
            self.push(Layer::Flatten)?;
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
        ensure!(
            output.values() == units,
            "its output {} does not hold its {units} units",
            output.name()
        );
        let layer = weighted_layer(graph, inputs, &weights, output, units, 0)?;
        self.push(Layer::Dense(Dense {
            units: units_u16,
            activation,
        }))?;
        self.records.push(Pending::Weighted {
            input: input.activation_quantization("input")?,
            layer,
        });
        self.flat = Some(units);
        Ok(())
    }

    fn softmax(
        &mut self,
        input: &Tensor<'_>,
        output: &Tensor<'_>,
        options: tflite::SoftmaxOptionsRef<'_>,
    ) -> Result<()> {
        ensure!(
            self.map.is_none() && self.flat.is_some(),
            "a SOFTMAX on a map: tinycnn's softmax works on a vector"
        );
        output.expect_type(tensor_type::INT8, "output")?;
        let quantization = output.activation_quantization("output")?;
        ensure!(
            quantization == SOFTMAX_OUTPUT,
            "its output is quantised with scale {} and zero point {}: an int8 SOFTMAX writes \
             scale 1/256, zero point -128",
            quantization.scale,
            quantization.zero_point
        );
        let beta = options.beta().map_err(invalid)?;
        ensure!(
            beta.is_finite() && beta > 0.0,
            "beta {beta}: it must be positive"
        );
        self.push(Layer::Softmax)?;
        self.records.push(Pending::Softmax {
            input: input.activation_quantization("input")?,
            beta,
        });
        Ok(())
    }

    fn residual_identity(&mut self, input: &Tensor<'_>) -> Result<()> {
        let map = self.map("residual block")?;
        input.activation_quantization("input")?;
        self.push(Layer::Residual(Shortcut::Identity))?;
        self.shortcut = Some(map);
        Ok(())
    }

    fn residual_projection(
        &mut self,
        graph: &Graph<'_>,
        inputs: &[i32],
        input: &Tensor<'_>,
        output: &Tensor<'_>,
        options: tflite::Conv2DOptionsRef<'_>,
    ) -> Result<()> {
        let map = self.map("residual block")?;
        ensure!(inputs.len() >= 2, "it has no weights");
        let weights = graph.tensor(inputs[1])?;
        weights.expect_type(tensor_type::INT8, "weights")?;
        let [filters, 1, 1, channels] = weights.shape[..] else {
            bail!("its weights {} are not a 1x1 kernel", weights.name());
        };
        ensure!(
            channels == map.channels,
            "its weights {} take {channels} input channels; its input has {}",
            weights.name(),
            map.channels
        );
        let (stride_h, stride_w) = (
            options.stride_h().map_err(invalid)?,
            options.stride_w().map_err(invalid)?,
        );
        ensure!(
            stride_h == stride_w && matches!(stride_h, 1 | 2),
            "stride {stride_h}x{stride_w}: a residual block's projection has stride 1 or 2 on \
             both axes"
        );
        ensure!(
            activation(options.fused_activation_function().map_err(invalid)?)? == Activation::None,
            "a fused activation on a residual block's projection: the block's ADD takes it as \
             it is"
        );
        let shortcut = Shortcut::Projection {
            filters: u16::try_from(filters).map_err(|_| anyhow!("{filters} filters"))?,
            stride: stride_h as u8,
        };
        let kept = shortcut.output(map);
        check_output_shape(output, &[1, kept.height, kept.width, kept.channels])?;
        let layer = weighted_layer(graph, inputs, &weights, output, filters, 0)?;
        self.push(Layer::Residual(shortcut))?;
        self.records.push(Pending::Weighted {
            input: input.activation_quantization("input")?,
            layer,
        });
        self.shortcut = Some(kept);
        Ok(())
    }

    fn add(
        &mut self,
        body: &Tensor<'_>,
        shortcut: &Tensor<'_>,
        output: &Tensor<'_>,
        options: tflite::AddOptionsRef<'_>,
    ) -> Result<()> {
        let map = self.map("ADD")?;
        let kept = self.shortcut.take().unwrap_or(map);
        ensure!(
            map == kept,
            "it adds a {map} map to a {kept} shortcut: tinycnn adds tensors of one shape"
        );
        ensure!(
            body.shape == output.shape && shortcut.shape == output.shape,
            "it broadcasts ({} + {} -> {}): tinycnn adds tensors of one shape",
            describe_shape(&body.shape),
            describe_shape(&shortcut.shape),
            describe_shape(&output.shape)
        );
        output.expect_type(tensor_type::INT8, "output")?;
        let activation = activation(options.fused_activation_function().map_err(invalid)?)?;
        self.push(Layer::Add(activation))?;
        self.records.push(Pending::Add {
            inputs: [
                body.activation_quantization("input")?,
                shortcut.activation_quantization("input")?,
            ],
            output: output.activation_quantization("output")?,
        });
        Ok(())
    }

    fn finish(self, output_kind: Option<OutputKind>) -> Result<(Architecture, Vec<u8>)> {
        let Some((input_shape, input_quantization)) = self.started else {
            bail!("the graph has no layers");
        };
        // A graph that can be read as a classifier is one, unless told otherwise.
        let architecture = match output_kind {
            Some(kind) => Architecture::with_output(input_shape, &self.layers, kind),
            None => Architecture::with_output(input_shape, &self.layers, OutputKind::Classes)
                .or_else(|_| {
                    Architecture::with_output(input_shape, &self.layers, OutputKind::Values)
                }),
        }
        .map_err(|e| anyhow!("the graph's network is not one tinycnn runs: {e}"))?;
        let le =
            |values: &[i32]| -> Vec<u8> { values.iter().flat_map(|v| v.to_le_bytes()).collect() };
        let mut tensors: Vec<RecordTensors> = Vec::with_capacity(self.records.len());
        for record in &self.records {
            tensors.push(match record {
                Pending::Weighted { input, layer } => {
                    let mut multipliers = Vec::with_capacity(layer.bias.len());
                    let mut shifts = Vec::with_capacity(layer.bias.len());
                    for &weight_scale in &layer.weight_scales {
                        // As TensorFlow Lite derives them from the scales (in double precision).
                        let real = f64::from(input.scale) * f64::from(weight_scale)
                            / f64::from(layer.output.scale);
                        let (multiplier, shift) = quantize_multiplier(real);
                        multipliers.push(multiplier);
                        shifts.push(shift as i8 as u8);
                    }
                    (
                        layer.output,
                        layer
                            .weight_scales
                            .iter()
                            .flat_map(|s| s.to_le_bytes())
                            .collect(),
                        layer.weights.clone(),
                        le(&layer.bias),
                        le(&multipliers),
                        shifts,
                    )
                }
                Pending::Add { inputs, output } => {
                    let params = quant::add_params(
                        [inputs[0].scale, inputs[1].scale],
                        [inputs[0].zero_point, inputs[1].zero_point],
                        output.scale,
                        output.zero_point,
                    );
                    let (multipliers, shifts) = params.record_multipliers();
                    (
                        *output,
                        Vec::new(),
                        Vec::new(),
                        Vec::new(),
                        le(&multipliers),
                        shifts.iter().map(|&s| s as i8 as u8).collect(),
                    )
                }
                Pending::Softmax { input, beta } => {
                    let params = quant::softmax_params(input.scale, *beta);
                    (
                        SOFTMAX_OUTPUT,
                        Vec::new(),
                        Vec::new(),
                        le(&[params.diff_min]),
                        le(&[params.input_multiplier]),
                        vec![params.input_left_shift as i8 as u8],
                    )
                }
            });
        }
        let records: Vec<Int8LayerRecord<'_>> = tensors
            .iter()
            .map(
                |(output, weight_scales, weights, bias, multipliers, shifts)| Int8LayerRecord {
                    output: *output,
                    weight_scales,
                    weights,
                    bias,
                    multipliers,
                    shifts,
                },
            )
            .collect();
        // Always version 3: its arithmetic is TensorFlow Lite Micro's, what the graph runs on
        // a microcontroller.
        let file = Int8Record {
            architecture,
            input: input_quantization,
            layers: &records,
            class_names: &[],
            front_end: None,
        }
        .to_vec_as(VERSION_3)
        .context("encoding the int8 model")?;
        // Everything the loader checks (shifts in range, lengths) is checked here too.
        Int8Model::from_bytes(&file)
            .map_err(|e| anyhow!("the converted model does not load: {e}"))?;
        Ok((architecture, file))
    }
}

/// The tensors of a layer with weights and `outputs` output channels, whose per-channel
/// weight scales lie along `dimension` of the weights.
fn weighted_layer(
    graph: &Graph<'_>,
    inputs: &[i32],
    weights: &Tensor<'_>,
    output: &Tensor<'_>,
    outputs: usize,
    dimension: i32,
) -> Result<Weighted> {
    let weight_scales = weights.weight_scales(outputs, dimension)?;
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

fn activation(code: i8) -> Result<Activation> {
    match code {
        option::ACTIVATION_NONE => Ok(Activation::None),
        option::ACTIVATION_RELU => Ok(Activation::Relu),
        option::ACTIVATION_RELU6 => Ok(Activation::Relu6),
        2 => bail!("a fused RELU_N1_TO_1: tinycnn's layers have ReLU, ReLU6 or none"),
        4 => bail!("a fused TANH: tinycnn's layers have ReLU, ReLU6 or none"),
        other => bail!("fused activation {other}: tinycnn's layers have ReLU, ReLU6 or none"),
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
