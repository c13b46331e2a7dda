#!/usr/bin/env python3
"""The Keras peer that tinycnn's training is compared against.

By default it trains the Keras MNIST tutorial's network, the one `host train`
trains by default (`conv3x3:64 pool drop:0.5 conv3x3:128 pool drop:0.5
conv3x3:256 pool drop:0.5 flatten dense:128 dense:64 dense:32 dense:10`), with
the tutorial's recipe, and times it:

- input 28x28x1, pixels scaled to [0, 1];
- three blocks of Conv2D 3x3 ('same' padding, ReLU) with 64, 128 and 256
  filters, each followed by MaxPooling2D 2x2 and Dropout 0.5;
- Flatten, Dense 128, 64 and 32 (ReLU), Dense 10 with softmax;
- categorical cross-entropy on one-hot labels;
- Adagrad with learning rate 0.01 and the accumulators starting at 0
  (`initial_accumulator_value=0.0`), epsilon 1e-7, which Keras 3 adds inside
  the square root: `theta -= lr * g / sqrt(sum(g^2) + eps)`. This is what the
  project's trainer calls "the Keras of the tutorial" (host/src/train/mod.rs,
  host/src/train/adagrad.rs). Note that these are not Keras's own defaults
  (learning rate 0.001, accumulators from 0.1); they are set explicitly here.
  `host train --adagrad-epsilon 1e-7` runs exactly this optimizer; `host
  train`'s default epsilon is 1e-6;
- Keras's default initialisers (Glorot-uniform weights, zero biases);
- batches of 128, the training set shuffled anew each epoch;
- the test set evaluated after every epoch (`validation_data`, in batches of
  128); one `fit` call for all the epochs.

Any other network: --arch
-------------------------
`--arch TEXT` (or `--arch @FILE`) trains the network of a tinycnn description
instead, in the text form of core/src/text.rs that `host train --arch` takes
and `host inspect` prints, built with Keras's functional API layer for layer:

  input:HxWxC, input:N   keras.Input (default: the data's shape); a vector
                         input takes the pictures' values as one vector
  convHxW:F[:opts]       Conv2D(F, (H, W)); options in any order: same
                         (default) or valid, s2 or s2x1 (strides), relu
                         (default), relu6 or linear
  dwHxW[:opts]           DepthwiseConv2D((H, W)); options as conv, and m2
                         (depth_multiplier)
  pool                   MaxPooling2D 2x2, stride 2, 'valid'
  maxpoolHxW, avgpoolHxW MaxPooling2D / AveragePooling2D; stride = window and
                         'valid' unless :sN or :same (TensorFlow's average
                         pool counts only the taps inside the input, as the
                         core's does)
  gap                    GlobalAveragePooling2D (H x W x C -> C)
  residual               starts a residual block: its input is kept as the
  residual:F[:s2]        shortcut, or (with F) passed through a 1x1 Conv2D of
                         F filters, stride 1 or 2, 'same', with bias and no
                         activation (the projection)
  add[:act]              ends the block: Add()([block output, shortcut]),
                         then ReLU (default), ReLU6 or nothing (linear)
  drop:R                 Dropout(R)
  flatten                Flatten (height, width, channel order: NHWC)
  dense:U[:act]          Dense(U), ReLU unless :linear or :relu6; the last
                         dense layer gives the logits (no activation)
  softmax                Softmax (optional, last)

Convolutions, depthwise convolutions and dense layers have biases and
Keras's default initialisers (Glorot uniform, zero biases), as `host train`'s
defaults; 'same' padding is TensorFlow's, which the core follows. A dense
layer on a 1x1xC map (after an average pool of the whole map) first reshapes
it to a vector, as the core sees it. The loss is categorical cross-entropy:
on the softmax's output when the description ends in `softmax` (Keras then
takes the logits before it), on the logits otherwise (`from_logits=True`),
the same function either way. A word the script does not know is an error
naming it, as is a layer where the core's rules refuse it (a dense layer on
a map, `add` without `residual`, mismatched block shapes, relu on the
logits, ...). Descriptions ending in `output:values` (an autoencoder) are
parsed (--parse-only) but not trained: the peer trains classifiers.

Batch normalisation is `host train`'s option `:bn` of a convolution,
depthwise convolution or hidden dense layer (`conv3x3:32:s2:bn`, `dw3x3:bn`,
`dense:64:bn`; not the logits): BatchNormalization (epsilon 1e-3, momentum
--bn-momentum, gamma 1, beta 0) after the layer, before its activation; the
layer then has no bias, as Keras models usually do. `--batch-norm` puts it
after every convolution, depthwise convolution and hidden dense layer. A residual block's 1x1 projection gets none (as in
MLPerf Tiny's ResNet-8). Keras counts BatchNormalization's four values per
channel as parameters (two trainable); the core, which gets batch
normalisation folded into the weights and biases, counts a bias instead, so
the two counts differ by 3 per normalised channel: both are printed.
`--bn-momentum M` sets the moving statistics' momentum (Keras's 0.99 by
default; MLPerf Tiny's training scripts use 0.9). With 0.99 the moving
statistics lag a network that is still changing fast: one epoch of the
DS-CNN shape on MNIST (Adam) gave 98.2 % on the test set with batch
statistics but 32.5 % with the moving ones, what evaluation uses.

`--parse-only` prints the layers with their output shapes, parameters and
multiply-accumulates as the core counts them (`tinycnn::Architecture::
parameters()` and `macs()`, computed here in Python) and the parameter
count the Keras model will have, and exits: it needs neither TensorFlow nor
numpy nor the data. When a model is built, its `count_params()` must equal
that count (an error otherwise). The parser's tests are doctests, run with
the standard library alone:

    python3 -B -m doctest scripts/keras-reference.py

Optimiser and schedule, as host train
-------------------------------------
`--optimizer adagrad` (the default, as above; `--adagrad-epsilon` sets its
epsilon, default 1e-7 here, 1e-6 in host train) or `adam` (keras.optimizers.
Adam with Keras's defaults: beta_1 0.9, beta_2 0.999, epsilon 1e-7); `--lr`
(default 0.01 for adagrad, 0.001 for adam); `--lr-schedule constant`,
`step:EPOCHS:FACTOR` (a LearningRateScheduler callback setting
`lr * FACTOR ** (epoch // EPOCHS)` at the start of each epoch, epochs counted
from 0) or `cosine` (keras.optimizers.schedules.CosineDecay(lr, decay_steps =
epochs * batches per epoch), alpha 0, no warm-up); `--weight-decay F` (the
optimizer's `weight_decay`, Keras 3's decoupled decay: every variable,
biases and batch normalisation's gamma and beta included, loses F x the
learning rate of itself before each step); `--batch-size` (default 128),
`--epochs`, `--seed`; `--init glorot-uniform` (default), `he-uniform`
(Keras's he_uniform) or `he-normal` (an untruncated normal of standard
deviation sqrt(2 / fan_in), as host train's) for the convolutions, depthwise
convolutions and dense layers whose activation is ReLU or ReLU6, Glorot
uniform for the others (the logits, linear layers, projections). Keras
computes a depthwise kernel's fans from its shape (H, W, channels,
multiplier) as a convolution's: fan_in = H x W x channels, fan_out = H x W x
multiplier (Glorot's limit for a dw3x3 on 64 channels: sqrt(6 / 585)); the
core's `fan_in` of a depthwise layer is H x W.

Data
----
The four files are read with numpy and gzip, raw or gzip-compressed, from the
directory given with --data (by default data/mnist in the repository, where
`cargo run --release --bin host -- data --download` puts them). Any data set
in MNIST's format works, Fashion-MNIST included, with pictures of any size:
its classes are one more than its largest label, at least ten, as host
train counts them; without --arch the tutorial's layers take the pictures'
shape and end in as many units. `--limit N` and `--test-limit N` take the
first N pictures only, as host train's do.

`--pad-to SIDE` puts each picture in the middle of a SIDE x SIDE black frame
(the smaller half of the border above and left, for an odd difference) and
`--channels 3` repeats it on three channels: Fashion-MNIST becomes 32x32x3
for MLPerf Tiny's ResNet-8. host train gets exactly the same pictures from a
folder set written by scripts/idx-to-folders.py with the same --pad-to (grey
PNGs already of the input's size, so host takes them as they are, and turns
grey into RGB by repeating it, as here; host's `--fit pad` would scale 28 to
32 instead). The folder set's file-name order is the IDX order, so both read
the pictures in the same order:

    python3 scripts/idx-to-folders.py --data /usr/share/datasets/fashion-mnist \\
        --out /tmp/fashion-32 --pad-to 32
    RESNET8='input:32x32x3 conv3x3:16 residual conv3x3:16 conv3x3:16:linear add
        residual:32:s2 conv3x3:32:s2 conv3x3:32:linear add residual:64:s2
        conv3x3:64:s2 conv3x3:64:linear add avgpool8x8 flatten dense:10 softmax'
    bash scripts/keras-reference.sh --data /usr/share/datasets/fashion-mnist \\
        --pad-to 32 --channels 3 --arch "$RESNET8" --optimizer adam --epochs 10
    host train --data /tmp/fashion-32 --arch "$RESNET8" --optimizer adam --epochs 10

Output
------
Each epoch prints the wall seconds of its training (the first one includes
TensorFlow's tracing of the graph, as a first epoch in Keras does), the
training loss and accuracy Keras reports, the test loss and accuracy, and the
seconds of the evaluation and of training and evaluation together (what the
README's "one epoch (training + test evaluation)" compares). The last line of
output is one JSON object with the figures, for scripts: `seconds_per_epoch`
is training alone, `epoch_seconds_with_eval` includes the evaluation, and
`fit_seconds` is the whole `fit` call, which also pays once, after the last
epoch, for tearing down Keras's input pipeline (several seconds here). It
also holds the description trained (`description`, in the core's text form),
`batch_norm`, `optimizer`, `learning_rate`, `lr_schedule`, `weight_decay`,
`init`, `parameters` (Keras's `count_params()`), `core_parameters` and
`macs` (as the core counts them), `test_accuracy_per_epoch`, and each
epoch's first learning rate in `per_epoch`.

A seed fixes the initial weights, the shuffles and the dropout masks; on one
machine with the same thread count, runs with the same seed have repeated
exactly, but TensorFlow does not promise it for its multithreaded CPU kernels.

The figures go to standard output. TensorFlow's own messages go to standard
error: its informational ones are turned off (TF_CPP_MIN_LOG_LEVEL=2 unless
set), but TensorFlow 2.21 prints its oneDNN notice while loading whatever the
level, so `2>/dev/null` gives a clean output.

Normally run through scripts/keras-reference.sh, which sets up a virtual
environment with the pinned TensorFlow first.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

try:
    import numpy as np
except ImportError:  # --parse-only and the doctests need only the standard library
    np = None

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT / "data" / "mnist"

# The tutorial's recipe; see the module docstring.
BATCH_SIZE = 128
LEARNING_RATE = 0.01
INITIAL_ACCUMULATOR = 0.0
EPSILON = 1e-7
DROPOUT = 0.5
CLASSES = 10
SIDE = 28
# Keras's Adam learning rate, host train's default for --optimizer adam.
ADAM_LEARNING_RATE = 0.001
# host train's IDX reader counts at least this many classes.
MIN_IDX_CLASSES = 10

# The tutorial's network in the core's text form (its logits: as many units as classes).
TUTORIAL = (
    "conv3x3:64 pool drop:0.5 conv3x3:128 pool drop:0.5 conv3x3:256 pool drop:0.5 "
    "flatten dense:128 dense:64 dense:32 dense:{classes}"
)

# ---------------------------------------------------------------------------------------------
# The description: core/src/text.rs's grammar and core/src/arch.rs's rules, in Python.
# ---------------------------------------------------------------------------------------------

# The core's limits (core/src/arch.rs).
MAX_LAYERS = 32
MAX_SIDE = 256
MAX_KERNEL_SIDE = 16
MAX_CONV_STRIDE = 2
MAX_DEPTH_MULTIPLIER = 8
MAX_FILTERS = 1024
MAX_UNITS = 4096
MAX_SOFTMAX_VALUES = 511
MIN_CLASSES = 2

ACTIVATIONS = ("relu", "relu6", "linear")

UNKNOWN_WORD_HELP = (
    "expected convKxK:F, dwKxK, pool, maxpoolKxK, avgpoolKxK, gap, residual, add, drop:R, "
    "flatten, dense:U or softmax (or input:HxWxC first, output:values last)"
)
OPTION_HELP = (
    "options are same or valid, s2 or s2x1 (stride), m2 (depthwise multiplier), then relu, "
    "relu6 or linear, each at most once and only where the layer has it"
)


class DescriptionError(Exception):
    """A description that the core would refuse; the message names the word or layer."""


@dataclass
class Layer:
    """One layer of a description, as core/src/arch.rs's `Layer`.

    kind: conv, dw, pool (the tutorial's 2x2 max-pool), maxpool, avgpool, gap, residual, add,
    drop, flatten, dense or softmax. `number` is the filters of a convolution or projection
    (None: an identity shortcut), the units of a dense layer, the multiplier of a depthwise
    one, the rate of a dropout in thousandths.
    """

    kind: str
    word: str
    number: int | None = None
    size: tuple = (1, 1)
    stride: tuple = (1, 1)
    padding: str = "same"
    activation: str = "linear"
    activation_given: bool = False
    bn: bool = False


@dataclass
class Info:
    """A layer where it stands: its name (conv1, dw2, ...), shapes, parameters and MACs as the
    core counts them (`LayerInfo`), and the extra parameters Keras counts with --batch-norm."""

    index: int
    name: str
    layer: Layer
    input: tuple
    output: tuple
    parameters: int
    macs: int
    normalised: bool = False


@dataclass
class Description:
    """An input shape (H, W, C; a vector of N is 1, 1, N), the layers, whether the output is
    values (`output:values`) rather than classes."""

    input: tuple
    layers: list
    values: bool = False

    def walk(self, batch_norm=False):
        """Every layer as an Info, checked as the core checks a description."""
        return walk(self, batch_norm)

    def __str__(self):
        """The text form, input first, as the core's `Display` writes it."""
        return _description_text(self)


def words(text):
    """The words of `text`: separated by spaces, newlines or commas; `#` starts a comment.

    >>> list(words("conv3x3:8, pool  # a comment, pool\\nflatten"))
    ['conv3x3:8', 'pool', 'flatten']
    """
    for line in text.splitlines():
        for word in line.split("#", 1)[0].replace(",", " ").split():
            yield word


def _count(text):
    """A whole number written with digits only, or None."""
    return int(text) if text.isdigit() and text.isascii() else None


def _number(text, word, low, high, what):
    value = _count(text)
    if value is None or not low <= value <= high:
        raise DescriptionError(f"`{word}`: {what} {text!r} is not a whole number from {low} to {high}")
    return value


def _shape(text):
    parts = text.split("x")
    values = [_count(part) for part in parts]
    if None in values or len(values) not in (1, 3):
        return None
    return (1, 1, values[0]) if len(values) == 1 else tuple(values)


def _size(text, word):
    """`HxW` after a layer's word."""
    height, cross, width = text.partition("x")
    if not cross:
        raise DescriptionError(f"`{word}` is not a layer: {UNKNOWN_WORD_HELP}")
    return (_number(height, word, 0, 255, "a window side"), _number(width, word, 0, 255, "a window side"))


def _options(parts, word, padding=False, stride=False, multiplier=False, activation=False,
             bn=False):
    """The options after a layer's values, each at most once: {'padding', 'stride',
    'multiplier', 'activation', 'bn'}. `bn` (batch-normalised while training, before the
    activation) is `host train`'s word, which the core never sees: export folds it."""
    given = {}

    def once(key, value):
        if key in given:
            raise DescriptionError(f"`{word}`: {OPTION_HELP}")
        given[key] = value

    for option in parts:
        if option in ("same", "valid") and padding:
            once("padding", option)
        elif option in ACTIVATIONS and activation:
            once("activation", option)
        elif option[:1] == "s" and option[1:2].isdigit() and stride:
            height, cross, width = option[1:].partition("x")
            height = _number(height, word, 0, 255, "a stride")
            width = _number(width, word, 0, 255, "a stride") if cross else height
            once("stride", (height, width))
        elif option[:1] == "m" and option[1:2].isdigit() and multiplier:
            once("multiplier", _number(option[1:], word, 0, 255, "a depth multiplier"))
        elif option == "bn" and bn:
            once("bn", True)
        else:
            raise DescriptionError(f"`{word}`: option `{option}`: {OPTION_HELP}")
    return given


def _rate(text, word):
    """A dropout rate in thousandths: at most three decimals."""
    whole, _, fraction = text.partition(".")
    digits = lambda s: s == "" or (s.isdigit() and s.isascii())
    if (whole == "" and fraction == "") or not digits(whole) or not digits(fraction):
        raise DescriptionError(f"`{word}`: {text!r} is not a dropout rate")
    if len(fraction) > 3:
        raise DescriptionError(
            f"`{word}`: a dropout rate is a number between 0 and 1 with at most three decimals"
        )
    thousandths = int(whole or "0") * 1000 + int((fraction + "000")[:3])
    if not 0 < thousandths < 1000:
        raise DescriptionError(f"`{word}`: dropout rate {text}: it must be above 0 and below 1")
    return thousandths


def parse_layer(word):
    """One word as a Layer (text.rs's `parse_layer`).

    >>> parse_layer("conv10x4:64:s2")
    Layer(kind='conv', word='conv10x4:64:s2', number=64, size=(10, 4), stride=(2, 2), padding='same', activation='relu', activation_given=False, bn=False)
    >>> parse_layer("dw3x3:s2:relu6:bn").bn, str(parse_description("conv3x3:8:bn dw3x3:bn flatten dense:16:linear:bn dense:10"))
    (True, 'input:28x28x1 conv3x3:8:bn dw3x3:bn flatten dense:16:linear:bn dense:10')
    >>> parse_layer("dw3x3:s2x1:valid:relu6").stride, parse_layer("maxpool2x2").kind
    ((2, 1), 'pool')
    """
    head, *parts = word.split(":")

    def simple(kind):
        if parts:
            raise DescriptionError(f"`{word}`: `{head}` takes no options")
        return Layer(kind, word)

    def value(what):
        if not parts:
            raise DescriptionError(
                f"`{word}` needs a number after a colon: conv3x3:64 (filters), drop:0.5 (rate), "
                "dense:128 (units)"
            )
        return parts.pop(0)

    if head == "pool":
        return simple("pool")
    if head == "flatten":
        return simple("flatten")
    if head in ("gap", "globalavgpool"):
        return simple("gap")
    if head == "softmax":
        return simple("softmax")
    if head in ("drop", "dropout"):
        rate = _rate(value("rate"), word)
        if parts:
            raise DescriptionError(f"`{word}`: a dropout layer takes no options")
        return Layer("drop", word, number=rate)
    if head == "dense":
        units = _number(value("units"), word, 0, 65535, "units")
        options = _options(parts, word, activation=True, bn=True)
        return Layer("dense", word, number=units, activation=options.get("activation", "relu"),
                     activation_given="activation" in options, bn="bn" in options)
    if head == "add":
        options = _options(parts, word, activation=True)
        return Layer("add", word, activation=options.get("activation", "relu"), activation_given=True)
    if head == "residual":
        if not parts:
            return Layer("residual", word)
        filters = _number(parts.pop(0), word, 0, 65535, "filters")
        stride = _options(parts, word, stride=True).get("stride", (1, 1))
        if stride[0] != stride[1]:
            raise DescriptionError(f"`{word}`: a projection's stride is the same on both axes")
        return Layer("residual", word, number=filters, stride=stride)
    if head.startswith("conv"):
        size = _size(head[4:], word)
        filters = _number(value("filters"), word, 0, 65535, "filters")
        options = _options(parts, word, padding=True, stride=True, activation=True, bn=True)
        return Layer("conv", word, number=filters, size=size, stride=options.get("stride", (1, 1)),
                     padding=options.get("padding", "same"),
                     activation=options.get("activation", "relu"),
                     activation_given="activation" in options, bn="bn" in options)
    for prefix in ("dw", "depthwise"):
        if head.startswith(prefix) and head[len(prefix):][:1].isdigit():
            size = _size(head[len(prefix):], word)
            options = _options(parts, word, padding=True, stride=True, multiplier=True,
                               activation=True, bn=True)
            return Layer("dw", word, number=options.get("multiplier", 1), size=size,
                         stride=options.get("stride", (1, 1)),
                         padding=options.get("padding", "same"),
                         activation=options.get("activation", "relu"),
                         activation_given="activation" in options, bn="bn" in options)
    for kind in ("maxpool", "avgpool"):
        if head.startswith(kind):
            size = _size(head[len(kind):], word)
            options = _options(parts, word, padding=True, stride=True)
            layer = Layer(kind, word, size=size, stride=options.get("stride", size),
                          padding=options.get("padding", "valid"))
            # The tutorial's 2x2 stride-2 'valid' max-pool is `pool` however it is written.
            if kind == "maxpool" and (layer.size, layer.stride, layer.padding) == ((2, 2), (2, 2), "valid"):
                return Layer("pool", word)
            return layer
    raise DescriptionError(f"`{word}` is not a layer: {UNKNOWN_WORD_HELP}")


def parse_description(text, default_input=(SIDE, SIDE, 1)):
    """The text form (core/src/text.rs's `parse`) as a Description, checked as the core checks it.

    >>> small = parse_description("input:28x28x1 conv3x3:16 pool conv3x3:32 pool conv3x3:64 pool "
    ...     "drop:0.25 flatten dense:64 drop:0.25 dense:10")
    >>> core_parameters(small), core_macs(small)
    (60874, 1956736)
    >>> print(small)
    input:28x28x1 conv3x3:16 pool conv3x3:32 pool conv3x3:64 pool drop:0.25 flatten dense:64 drop:0.25 dense:10
    >>> tutorial = parse_description(TUTORIAL.format(classes=10))
    >>> core_parameters(tutorial), keras_parameters(tutorial)
    (675370, 675370)

    MLPerf Tiny's DS-CNN and ResNet-8, as `host inspect data/mlperf/kws.tcnn` and
    `resnet8.tcnn` print them (22,604 and 77,706 parameters there):

    >>> kws = parse_description("input:49x10x1 conv10x4:64:s2 dw3x3 conv1x1:64 dw3x3 conv1x1:64 "
    ...     "dw3x3 conv1x1:64 dw3x3 conv1x1:64 avgpool25x5 flatten dense:12 softmax")
    >>> core_parameters(kws), core_macs(kws), keras_parameters(kws, batch_norm=True)
    (22604, 2656768, 24332)
    >>> resnet8 = parse_description("input:32x32x3 conv3x3:16 residual conv3x3:16 "
    ...     "conv3x3:16:linear add residual:32:s2 conv3x3:32:s2 conv3x3:32:linear add "
    ...     "residual:64:s2 conv3x3:64:s2 conv3x3:64:linear add avgpool8x8 flatten dense:10 softmax")
    >>> core_parameters(resnet8), core_macs(resnet8)
    (77706, 12501632)
    >>> [(info.name, info.output) for info in resnet8.walk()][4:6]
    [('add1', (32, 32, 16)), ('residual2', (32, 32, 16))]
    >>> vww = "input:96x96x3 conv3x3:8:s2 dw3x3 conv1x1:16 dw3x3:s2 conv1x1:32 dw3x3 conv1x1:32 " \\
    ...     "dw3x3:s2 conv1x1:64 dw3x3 conv1x1:64 dw3x3:s2 conv1x1:128 dw3x3 conv1x1:128 dw3x3 " \\
    ...     "conv1x1:128 dw3x3 conv1x1:128 dw3x3 conv1x1:128 dw3x3 conv1x1:128 dw3x3:s2 conv1x1:256 " \\
    ...     "dw3x3 conv1x1:256 avgpool3x3 flatten dense:2 softmax"
    >>> core_parameters(parse_description(vww)), core_macs(parse_description(vww))
    (210850, 7489664)
    >>> autoencoder = parse_description("input:640 dense:128 dense:128 dense:128 dense:128 dense:8 "
    ...     "dense:128 dense:128 dense:128 dense:128 dense:640:linear output:values")
    >>> core_parameters(autoencoder), core_macs(autoencoder)
    (265864, 264192)
    >>> print(layer_table(parse_description("input:784 dense:10")))
    layer                                   output  parameters         MACs
    dense1    dense:10                      1x1x10       7,850        7,840
    total                                                7,850        7,840
    Keras parameters: 7,850

    Errors name the word or the layer, as the core's do:

    >>> def problem(text):
    ...     try:
    ...         parse_description(text)
    ...     except DescriptionError as err:
    ...         print(err)
    >>> problem("conv3x3:8 pool pool pool pool pool flatten dense:10")
    layer 6 (pool5): a 2x2 max-pool needs a map of at least 2x2, this one gets 1x1x8
    >>> problem("conv3x3:8 dense:10")
    layer 2 (dense1): a dense layer needs a vector: put `flatten` before the first dense layer
    >>> problem("flatten dense:10:relu")
    layer 2 (dense1): the last dense layer gives the logits and has no activation
    >>> problem("residual conv3x3:8:s2 add flatten dense:10")
    layer 3 (add1): the block's layers give 14x14x8 but its shortcut holds 28x28x1: they must match (a `residual:FILTERS:s2` shortcut projects the input)
    >>> problem("conv3x3:8 flatten input:28x28x1 dense:10")
    `input:28x28x1`: the input is the first word, as input:HEIGHTxWIDTHxCHANNELS (e.g. input:28x28x1) or input:VALUES for a vector (e.g. input:640)
    >>> problem("conv3x3:8 pool bn flatten dense:10")
    `bn` is not a layer: expected convKxK:F, dwKxK, pool, maxpoolKxK, avgpoolKxK, gap, residual, add, drop:R, flatten, dense:U or softmax (or input:HxWxC first, output:values last)
    >>> problem("conv3x3:8:valid:same flatten dense:10")
    `conv3x3:8:valid:same`: options are same or valid, s2 or s2x1 (stride), m2 (depthwise multiplier), then relu, relu6 or linear, each at most once and only where the layer has it
    >>> problem("input:28x28x1 residual:16 conv3x3:16 add residual conv3x3:16:linear add gap dense:10")
    """
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise DescriptionError(f"{path}: cannot read the description: {err}") from None
    shape = tuple(default_input)
    layers = []
    values = None
    for position, word in enumerate(words(text)):
        if values is not None:
            raise DescriptionError(f"`{word}`: output:values or output:classes is the last word")
        if word.startswith("input:"):
            given = _shape(word[len("input:"):])
            if position != 0 or given is None:
                raise DescriptionError(
                    f"`{word}`: the input is the first word, as input:HEIGHTxWIDTHxCHANNELS "
                    "(e.g. input:28x28x1) or input:VALUES for a vector (e.g. input:640)"
                )
            shape = given
            continue
        if word.startswith("output:"):
            if word not in ("output:values", "output:classes"):
                raise DescriptionError(f"`{word}`: output:values or output:classes is the last word")
            values = word == "output:values"
            continue
        layers.append(parse_layer(word))
        if len(layers) > MAX_LAYERS:
            raise DescriptionError(f"`{word}`: more than the {MAX_LAYERS} layers supported")
    description = Description(shape, layers, bool(values))
    # ReLU is the default of every dense layer but a classifier's last (before an optional
    # softmax), which gives the logits: written `:relu` there, the description refuses it.
    if not description.values:
        logits = len(layers) - (2 if layers and layers[-1].kind == "softmax" else 1)
        if logits >= 0 and layers[logits].kind == "dense" and not layers[logits].activation_given:
            layers[logits].activation = "linear"
    description.walk()
    return description


def _fmt(shape):
    return "x".join(str(side) for side in shape)


def _window_output(side, kernel, stride, padding):
    """TensorFlow's output side (the core's `Window::output_side`), None when it does not fit."""
    if padding == "same":
        return -(-side // stride)
    if side < kernel:
        return None
    return -(-(side - kernel + 1) // stride)


def _is_vector(shape):
    return shape[0] == 1 and shape[1] == 1


def walk(description, batch_norm=False):
    """The layers with names, shapes, parameters and MACs (core/src/arch.rs's walk and checks)."""
    shape = description.input
    if not (1 <= shape[0] <= MAX_SIDE and 1 <= shape[1] <= MAX_SIDE):
        raise DescriptionError(f"input of {shape[0]}x{shape[1]} pixels: each side must be 1 to {MAX_SIDE}")
    if not 1 <= shape[2] <= MAX_UNITS:
        raise DescriptionError(f"input with {shape[2]} channels: 1 to {MAX_UNITS} are supported")
    layers = description.layers
    if not layers:
        raise DescriptionError("the description has no layers")
    counts = {}
    flattened = False
    block = None  # (index of its residual layer, shortcut shape)
    infos = []
    # The layer whose output the network gives (no batch normalisation there).
    last_dense = max((i for i, layer in enumerate(layers) if layer.kind == "dense"), default=None)
    for index, layer in enumerate(layers):
        kind_name = {"maxpool": "pool", "pool": "pool"}.get(layer.kind, layer.kind)
        counts[kind_name] = counts.get(kind_name, 0) + 1
        name = kind_name if kind_name in ("flatten", "softmax") else f"{kind_name}{counts[kind_name]}"

        def fail(problem):
            return DescriptionError(f"layer {index + 1} ({name}): {problem}")

        map_layer = layer.kind in ("conv", "dw", "pool", "maxpool", "avgpool", "gap", "residual")
        if map_layer and flattened:
            raise fail("convolutions, pools and residual blocks work on maps, but the map was "
                       "already flattened")
        if block is not None and layer.kind in ("flatten", "dense"):
            raise fail("a residual block holds maps: `flatten` and dense layers go after its `add`")
        if layer.kind == "softmax" and index != len(layers) - 1:
            raise fail("softmax must be the last layer")
        weights = outputs = 0
        macs_per_weight = 0
        if layer.kind in ("conv", "dw"):
            (height, width), stride = layer.size, layer.stride
            if not (1 <= height <= MAX_KERNEL_SIDE and 1 <= width <= MAX_KERNEL_SIDE):
                raise fail(f"a {height}x{width} kernel: each side must be 1 to {MAX_KERNEL_SIDE}")
            if not all(1 <= s <= MAX_CONV_STRIDE for s in stride):
                raise fail(f"stride {stride[0]}x{stride[1]}: convolutions take stride 1 or 2 on "
                           "each axis, pools at least 1")
            if layer.kind == "conv":
                if not 1 <= layer.number <= MAX_FILTERS:
                    raise fail(f"{layer.number} filters: 1 to {MAX_FILTERS} are supported")
                channels = layer.number
                outputs, fan_in = channels, height * width * shape[2]
            else:
                if not 1 <= layer.number <= MAX_DEPTH_MULTIPLIER:
                    raise fail(f"depth multiplier {layer.number}: 1 to {MAX_DEPTH_MULTIPLIER} are supported")
                channels = shape[2] * layer.number
                outputs, fan_in = channels, height * width
            sides = [_window_output(shape[a], layer.size[a], stride[a], layer.padding) for a in (0, 1)]
            if None in sides:
                raise fail(f"a {height}x{width} 'valid' window needs an input of at least "
                           f"{height}x{width}, this one gets {_fmt(shape)}")
            output = (sides[0], sides[1], channels)
            weights = outputs * fan_in
            macs_per_weight = output[0] * output[1]
        elif layer.kind == "pool":
            if shape[0] < 2 or shape[1] < 2:
                raise fail(f"a 2x2 max-pool needs a map of at least 2x2, this one gets {_fmt(shape)}")
            output = (shape[0] // 2, shape[1] // 2, shape[2])
        elif layer.kind in ("maxpool", "avgpool"):
            (height, width), stride = layer.size, layer.stride
            if height == 0 or width == 0:
                raise fail(f"a {height}x{width} pool window: each side must be 1 to 255")
            if 0 in stride:
                raise fail(f"stride {stride[0]}x{stride[1]}: convolutions take stride 1 or 2 on "
                           "each axis, pools at least 1")
            sides = [_window_output(shape[a], layer.size[a], stride[a], layer.padding) for a in (0, 1)]
            if None in sides:
                raise fail(f"a {height}x{width} 'valid' window needs an input of at least "
                           f"{height}x{width}, this one gets {_fmt(shape)}")
            output = (sides[0], sides[1], shape[2])
        elif layer.kind == "gap":
            output = (1, 1, shape[2])
        elif layer.kind == "drop":
            output = shape
        elif layer.kind == "flatten":
            if flattened:
                raise fail("the map is already flattened")
            flattened = True
            output = (1, 1, shape[0] * shape[1] * shape[2])
        elif layer.kind == "dense":
            if not flattened and not _is_vector(shape):
                raise fail("a dense layer needs a vector: put `flatten` before the first dense layer")
            if not 1 <= layer.number <= MAX_UNITS:
                raise fail(f"{layer.number} units: 1 to {MAX_UNITS} are supported")
            flattened = True
            outputs = layer.number
            weights = outputs * shape[0] * shape[1] * shape[2]
            macs_per_weight = 1
            output = (1, 1, layer.number)
        elif layer.kind == "residual":
            if block is not None:
                raise fail("a residual block starts inside another: end the first with `add`")
            kept = shape
            if layer.number is not None:
                stride = layer.stride[0]
                if not 1 <= layer.number <= MAX_FILTERS:
                    raise fail(f"{layer.number} filters: 1 to {MAX_FILTERS} are supported")
                if not 1 <= stride <= MAX_CONV_STRIDE:
                    raise fail(f"stride {stride}x{stride}: convolutions take stride 1 or 2 on "
                               "each axis, pools at least 1")
                kept = (-(-shape[0] // stride), -(-shape[1] // stride), layer.number)
                outputs = layer.number
                weights = outputs * shape[2]
                macs_per_weight = kept[0] * kept[1]
            block = (index, kept)
            output = shape  # the main line goes on with the block's input
        elif layer.kind == "add":
            if block is None:
                raise fail("`add` ends a residual block, but none was started")
            if block[0] + 1 == index:
                raise fail("the residual block has no layers")
            if shape != block[1]:
                raise fail(f"the block's layers give {_fmt(shape)} but its shortcut holds "
                           f"{_fmt(block[1])}: they must match (a `residual:FILTERS:s2` shortcut "
                           "projects the input)")
            block = None
            output = shape
        elif layer.kind == "softmax":
            if not _is_vector(shape):
                raise fail("softmax works on a vector: put it after a dense layer")
            if shape[2] > MAX_SOFTMAX_VALUES:
                raise fail(f"softmax over {shape[2]} values: the int8 softmax takes at most "
                           f"{MAX_SOFTMAX_VALUES}")
            output = shape
        else:  # parse_layer makes no other kind
            raise fail(f"unknown layer kind {layer.kind}")
        if layer.bn and layer.kind == "dense" and index == last_dense and not description.values:
            raise fail("the logits layer is not batch-normalised: leave `:bn` out of it")
        normalised = layer.bn or (batch_norm and (
            layer.kind in ("conv", "dw") or (layer.kind == "dense" and index != last_dense)
        ))
        infos.append(Info(index, name, layer, shape, output, weights + outputs,
                          weights * macs_per_weight, normalised))
        shape = output
    if block is not None:
        info = infos[block[0]]
        raise DescriptionError(f"layer {info.index + 1} ({info.name}): the residual block is not "
                               "ended: put `add` after its layers")
    last = infos[-1]
    if last.layer.kind == "drop":
        raise DescriptionError(f"layer {last.index + 1} ({last.name}): the network cannot end in dropout")
    if description.values:
        return infos
    logits = infos[-2] if last.layer.kind == "softmax" and len(infos) > 1 else last
    where = f"layer {logits.index + 1} ({logits.name})"
    if logits.layer.kind != "dense":
        raise DescriptionError(f"{where}: the last layer of a classifier must be a dense layer "
                               "(softmax may follow it): it gives the scores of the classes")
    if logits.layer.activation != "linear":
        raise DescriptionError(f"{where}: the last dense layer gives the logits and has no activation")
    if logits.layer.number < MIN_CLASSES:
        raise DescriptionError(f"{where}: the last dense layer gives {logits.layer.number} classes, "
                               f"at least {MIN_CLASSES} are needed")
    return infos


def core_parameters(description):
    """Trainable parameters as `tinycnn::Architecture::parameters()` counts them: weights and
    biases (batch normalisation folded into them)."""
    return sum(info.parameters for info in description.walk())


def core_macs(description):
    """Multiply-accumulates per picture as `tinycnn::Architecture::macs()` counts them."""
    return sum(info.macs for info in description.walk())


def keras_parameters(description, batch_norm=False):
    """What the Keras model's `count_params()` gives: the core's count, and with --batch-norm
    3 more per normalised output (no bias, BatchNormalization's gamma, beta, mean, variance)."""
    return sum(
        info.parameters + (3 * info.output[2] if info.normalised else 0)
        for info in description.walk(batch_norm)
    )


def _write_stride(stride):
    return f":s{stride[0]}" if stride[0] == stride[1] else f":s{stride[0]}x{stride[1]}"


def _write_layer(layer, logits):
    """One layer in the text form, as core/src/text.rs's `write_layer`."""
    activation = "" if layer.activation == "relu" else f":{layer.activation}"
    window = (_write_stride(layer.stride) if layer.stride != (1, 1) else "") + (
        ":valid" if layer.padding == "valid" else "")
    activation += ":bn" if layer.bn else ""
    if layer.kind == "conv":
        return f"conv{layer.size[0]}x{layer.size[1]}:{layer.number}{window}{activation}"
    if layer.kind == "dw":
        multiplier = f":m{layer.number}" if layer.number != 1 else ""
        return f"dw{layer.size[0]}x{layer.size[1]}{multiplier}{window}{activation}"
    if layer.kind in ("maxpool", "avgpool"):
        stride = _write_stride(layer.stride) if layer.stride != layer.size else ""
        return f"{layer.kind}{layer.size[0]}x{layer.size[1]}{stride}" + (
            ":same" if layer.padding == "same" else "")
    if layer.kind == "residual":
        if layer.number is None:
            return "residual"
        return f"residual:{layer.number}" + (f":s{layer.stride[0]}" if layer.stride[0] != 1 else "")
    if layer.kind == "add":
        return "add" + activation
    if layer.kind == "drop":
        fraction = f"{layer.number % 1000:03d}".rstrip("0") or "0"
        return f"drop:{layer.number // 1000}.{fraction}"
    if layer.kind == "dense":
        return f"dense:{layer.number}" + ("" if logits and layer.activation == "linear" else activation)
    return layer.kind  # pool, gap, flatten, softmax


def _logits_index(description):
    """The index of a classifier's logits layer (before an optional softmax); None for values."""
    layers = description.layers
    if description.values or not layers:
        return None
    return len(layers) - (2 if layers[-1].kind == "softmax" else 1)


def _description_text(description):
    """The text form, input first, as the core's `Display` writes it."""
    shape = description.input
    parts = [f"input:{shape[2]}" if _is_vector(shape) else f"input:{_fmt(shape)}"]
    logits = _logits_index(description)
    parts += [_write_layer(layer, index == logits) for index, layer in enumerate(description.layers)]
    if description.values:
        parts.append("output:values")
    return " ".join(parts)


def layer_table(description, batch_norm=False):
    """The layers as `host inspect` lists them (name, word, output, parameters, MACs), a total
    line, and the Keras parameter count."""
    infos = description.walk(batch_norm)
    lines = [f"{'layer':<10}{'':<24}{'output':>12}{'parameters':>12}{'MACs':>13}"]
    logits = _logits_index(description)
    for info in infos:
        word = _write_layer(info.layer, info.index == logits)
        if info.normalised:
            word += " +BN"
        output = _fmt(info.output)
        lines.append(f"{info.name:<10}{word:<24}{output:>12}{info.parameters:>12,}{info.macs:>13,}")
    lines.append(f"{'total':<10}{'':<24}{'':>12}{core_parameters(description):>12,}"
                 f"{core_macs(description):>13,}")
    lines.append(f"Keras parameters: {keras_parameters(description, batch_norm):,}"
                 + (" (with batch normalisation)" if batch_norm else ""))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The data: four IDX files.
# ---------------------------------------------------------------------------------------------

# (name in the directory, number of dimensions the header must declare)
FILES = {
    "train_images": ("train-images-idx3-ubyte", 3),
    "train_labels": ("train-labels-idx1-ubyte", 1),
    "test_images": ("t10k-images-idx3-ubyte", 3),
    "test_labels": ("t10k-labels-idx1-ubyte", 1),
}

IDX_UBYTE = 0x08
GZIP_MAGIC = b"\x1f\x8b"


class DataError(Exception):
    """A data file that is missing or not what MNIST's format says."""


def find_file(data_dir: Path, name: str) -> Path:
    """`name` or `name.gz` in `data_dir`, whichever exists (the raw file first)."""
    for candidate in (data_dir / name, data_dir / (name + ".gz")):
        if candidate.is_file():
            return candidate
    raise DataError(f"{data_dir}: neither {name} nor {name}.gz is there")


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """One IDX file of unsigned bytes with `ndim` dimensions, checked against its header.

    Gzip is recognised by its magic bytes, whatever the file is called.
    """
    try:
        raw = path.read_bytes()
        if raw[:2] == GZIP_MAGIC:
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as err:
        # gzip.BadGzipFile is an OSError; a truncated stream raises EOFError.
        raise DataError(f"{path}: cannot read it: {err}") from err

    if len(raw) < 4:
        raise DataError(f"{path}: {len(raw)} bytes, too short for an IDX header")
    magic = int.from_bytes(raw[:4], "big")
    expected = (IDX_UBYTE << 8) | ndim
    if raw[0] != 0 or raw[1] != 0:
        raise DataError(
            f"{path}: magic number 0x{magic:08x} is not an IDX file's "
            f"(expected 0x{expected:08x}; is it another format?)"
        )
    if raw[2] != IDX_UBYTE:
        raise DataError(
            f"{path}: element type 0x{raw[2]:02x}, expected 0x08 (unsigned byte) "
            f"(magic number 0x{magic:08x}, expected 0x{expected:08x})"
        )
    if raw[3] != ndim:
        raise DataError(
            f"{path}: {raw[3]} dimensions, expected {ndim} "
            f"(magic number 0x{magic:08x}, expected 0x{expected:08x})"
        )

    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: {len(raw)} bytes, too short for a {ndim}-dimensional IDX header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(dims, dtype=np.int64))
    if len(raw) != header + size:
        shape = "x".join(str(d) for d in dims) + (f" = {size}" if ndim > 1 else "")
        raise DataError(
            f"{path}: the header declares {shape} bytes of data, but "
            f"{len(raw) - header} follow it (truncated or corrupt?)"
        )
    if size == 0:
        raise DataError(f"{path}: no data (shape {dims})")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def load_split(data_dir: Path, split: str, limit=None):
    """Images as uint8 N x H x W and labels as int64 N, checked; the first `limit` only."""
    images_path = find_file(data_dir, FILES[f"{split}_images"][0])
    labels_path = find_file(data_dir, FILES[f"{split}_labels"][0])
    images = read_idx(images_path, FILES[f"{split}_images"][1])
    labels = read_idx(labels_path, FILES[f"{split}_labels"][1])
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images)} images but {labels_path} "
            f"holds {len(labels)} labels"
        )
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return images, labels.astype(np.int64)


def pad_pictures(images, side):
    """N x H x W pictures in the middle of a side x side black frame (the smaller half of the
    border above and left, as scripts/idx-to-folders.py --pad-to puts them)."""
    count, height, width = images.shape
    if side < height or side < width:
        raise DataError(f"--pad-to {side}: the pictures are {height}x{width}, larger than that")
    top, left = (side - height) // 2, (side - width) // 2
    framed = np.zeros((count, side, side), dtype=images.dtype)
    framed[:, top : top + height, left : left + width] = images
    return framed


def prepare(images, args):
    """uint8 N x H x W pictures as float32 N x H' x W' x C in [0, 1]: framed (--pad-to),
    repeated on --channels channels."""
    if args.pad_to is not None:
        images = pad_pictures(images, args.pad_to)
    x = images.astype(np.float32) / 255.0
    x = x.reshape(*images.shape, 1)
    if args.channels > 1:
        x = np.repeat(x, args.channels, axis=3)
    return x


# ---------------------------------------------------------------------------------------------
# The command line.
# ---------------------------------------------------------------------------------------------


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number of at least 0, not {text}")
    return value


def positive_float(text: str) -> float:
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be above 0")
    return value


def schedule(text: str):
    """`constant`, `cosine` or `step:EPOCHS:FACTOR` (host/src/train/schedule.rs's forms), as
    ('constant',), ('cosine',) or ('step', epochs, factor).

    >>> schedule("step:5:0.5"), schedule("cosine")
    (('step', 5, 0.5), ('cosine',))
    """
    usage = "constant, step:EPOCHS:FACTOR (e.g. step:5:0.5) or cosine"
    parts = text.strip().split(":")
    if parts in (["constant"], ["cosine"]):
        return (parts[0],)
    if len(parts) == 3 and parts[0] == "step":
        epochs = _count(parts[1])
        if epochs is None or epochs < 1:
            raise argparse.ArgumentTypeError(
                f"`{text}`: EPOCHS must be a whole number of at least 1; {usage}")
        try:
            factor = float(parts[2])
        except ValueError:
            factor = math.nan
        if not math.isfinite(factor) or factor <= 0:
            raise argparse.ArgumentTypeError(
                f"`{text}`: FACTOR must be a positive number (e.g. 0.5); {usage}")
        return ("step", epochs, factor)
    raise argparse.ArgumentTypeError(f"`{text}` is not a schedule; give {usage}")


def schedule_text(value):
    """The schedule as host train writes it (`step:5:0.5`)."""
    if value[0] == "step":
        return f"step:{value[1]}:{value[2]:g}"
    return value[0]


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="keras-reference.py",
        description=(
            "Train the Keras MNIST tutorial's network (the default network of `host train`) "
            "with the tutorial's recipe: Adagrad (learning rate 0.01, accumulators from 0, "
            "epsilon 1e-7), categorical cross-entropy, batches of 128 shuffled each epoch, "
            "the test set evaluated after every epoch; or, with --arch and the options below, "
            "the network and recipe of a `host train` command. Prints each epoch's training "
            "wall seconds and test loss and accuracy, then one JSON line with the figures."
        ),
        epilog=(
            "Usually run through scripts/keras-reference.sh, which creates a virtual "
            "environment with the pinned TensorFlow first. Example: "
            "bash scripts/keras-reference.sh --epochs 1 --data data/mnist. "
            "The module docstring (scripts/keras-reference.py) says how each word and option "
            "maps to Keras and how host train gets the same data for --pad-to."
        ),
    )
    parser.add_argument(
        "--data",
        metavar="DIR",
        type=Path,
        default=DEFAULT_DATA,
        help=(
            "directory with train-images-idx3-ubyte, train-labels-idx1-ubyte, "
            "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte, each raw or .gz; its classes are "
            "one more than its largest label, at least ten "
            "(default: data/mnist in the repository, %(default)s)"
        ),
    )
    parser.add_argument(
        "--arch",
        metavar="LAYERS",
        default=None,
        help=(
            "the network in tinycnn's text form, as `host train --arch` takes it (or @FILE), "
            "e.g. 'input:28x28x1 conv3x3:16 pool conv3x3:32 pool flatten dense:10'; without "
            "input: the data's shape (default: the tutorial's network, built as before)"
        ),
    )
    parser.add_argument(
        "--batch-norm",
        action="store_true",
        help=(
            "BatchNormalization (epsilon 1e-3, momentum --bn-momentum) after every convolution, depthwise "
            "convolution and hidden dense layer, before its activation, those layers without bias"
        ),
    )
    parser.add_argument(
        "--bn-momentum",
        metavar="M",
        type=non_negative_float,
        default=0.99,
        help=(
            "BatchNormalization's momentum: moving = M x moving + (1 - M) x the batch's "
            "(default: %(default)s, Keras's; MLPerf Tiny's scripts and scripts/mlperf-tiny.py use 0.9)"
        ),
    )
    parser.add_argument(
        "--parse-only",
        action="store_true",
        help=(
            "print the layers, their output shapes, parameters and MACs as the core counts them "
            "and the Keras parameter count, then exit (needs neither TensorFlow nor the data)"
        ),
    )
    parser.add_argument(
        "--optimizer",
        choices=("adagrad", "adam"),
        default="adagrad",
        help=(
            "adagrad (the tutorial's: accumulators from 0) or adam (Keras's defaults: beta_1 0.9, "
            "beta_2 0.999, epsilon 1e-7) (default: %(default)s)"
        ),
    )
    parser.add_argument(
        "--lr",
        metavar="RATE",
        type=positive_float,
        default=None,
        help="learning rate, where the schedule starts (default: 0.01 for adagrad, 0.001 for adam)",
    )
    parser.add_argument(
        "--lr-schedule",
        metavar="SCHEDULE",
        type=schedule,
        default=("constant",),
        help=(
            "constant (the default); step:EPOCHS:FACTOR, the rate times FACTOR after every "
            "EPOCHS epochs; or cosine, Keras's CosineDecay from --lr to 0 over every step of the run"
        ),
    )
    parser.add_argument(
        "--weight-decay",
        metavar="FRACTION",
        type=non_negative_float,
        default=0.0,
        help="the optimizer's weight_decay, Keras 3's decoupled decay (default: 0, none)",
    )
    parser.add_argument(
        "--adagrad-epsilon",
        metavar="EPS",
        type=positive_float,
        default=EPSILON,
        help="Adagrad's epsilon, inside the square root (default: %(default)g, the tutorial's Keras)",
    )
    parser.add_argument(
        "--init",
        choices=("glorot-uniform", "he-uniform", "he-normal"),
        default="glorot-uniform",
        help=(
            "initial weights of the layers followed by ReLU or ReLU6, as host train's --init "
            "(default: %(default)s; the others are always Glorot uniform)"
        ),
    )
    parser.add_argument(
        "--batch-size", metavar="N", type=positive_int, default=BATCH_SIZE,
        help="pictures per batch (default: %(default)s)",
    )
    parser.add_argument(
        "--epochs", metavar="N", type=positive_int, default=1, help="epochs to train (default: %(default)s)"
    )
    parser.add_argument(
        "--seed",
        metavar="S",
        type=int,
        default=42,
        help="seed of the initial weights, shuffles and dropout masks (default: %(default)s, as host train)",
    )
    parser.add_argument(
        "--pad-to",
        metavar="SIDE",
        type=positive_int,
        default=None,
        help=(
            "put each picture in the middle of a SIDE x SIDE black frame (28x28 -> 32x32: two "
            "rows and columns each side), as scripts/idx-to-folders.py --pad-to does"
        ),
    )
    parser.add_argument(
        "--channels",
        metavar="N",
        type=int,
        choices=(1, 3),
        default=1,
        help="repeat each grey picture on this many channels, 1 or 3 (default: %(default)s)",
    )
    parser.add_argument(
        "--limit", metavar="N", type=positive_int, default=None,
        help="train on the first N training pictures only (default: all)",
    )
    parser.add_argument(
        "--test-limit", metavar="N", type=positive_int, default=None,
        help="evaluate on the first N test pictures only (default: all)",
    )
    parser.add_argument(
        "--threads",
        metavar="N",
        type=positive_int,
        default=None,
        help="CPU threads for TensorFlow, within and between ops (default: TensorFlow's choice, all cores)",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="show Keras's progress bar while training"
    )
    args = parser.parse_args(argv)
    if args.lr is None:
        args.lr = LEARNING_RATE if args.optimizer == "adagrad" else ADAM_LEARNING_RATE
    return args


# ---------------------------------------------------------------------------------------------
# The Keras models.
# ---------------------------------------------------------------------------------------------


def build_tutorial(keras, classes):
    """The tutorial's network exactly as this script has always built it."""
    layers = keras.layers
    model = keras.Sequential(name="keras_mnist_tutorial")
    model.add(keras.Input(shape=(SIDE, SIDE, 1)))
    for filters in (64, 128, 256):
        model.add(layers.Conv2D(filters, (3, 3), padding="same", activation="relu"))
        model.add(layers.MaxPooling2D(pool_size=(2, 2)))
        model.add(layers.Dropout(DROPOUT))
    model.add(layers.Flatten())
    for units in (128, 64, 32):
        model.add(layers.Dense(units, activation="relu"))
    model.add(layers.Dense(classes, activation="softmax"))
    return model


def kernel_initializer(keras, init, activation):
    """--init for a layer whose activation is `activation`: He only before a ReLU (host train's
    rule), Glorot uniform otherwise."""
    if activation in ("relu", "relu6"):
        if init == "he-uniform":
            return keras.initializers.HeUniform()
        if init == "he-normal":
            # Not truncated, as host train's (PyTorch's kaiming_normal_); Keras's HeNormal is.
            return keras.initializers.VarianceScaling(
                scale=2.0, mode="fan_in", distribution="untruncated_normal"
            )
    return keras.initializers.GlorotUniform()


def build_network(keras, description, batch_norm, init, bn_momentum=0.99):
    """The description as a Keras functional model, layer for layer (the module docstring)."""
    layers = keras.layers
    vector_input = _is_vector(description.input)
    inputs = keras.Input(
        shape=(description.input[2],) if vector_input else description.input, name="input"
    )
    x = inputs
    is_map = not vector_input
    shortcut = None

    def activate(x, activation, name):
        if activation == "linear":
            return x
        return layers.Activation(activation, name=f"{name}_{activation}")(x)

    def normalise_then_activate(x, info):
        # With batch normalisation the layer itself is linear and has no bias.
        if info.normalised:
            x = layers.BatchNormalization(momentum=bn_momentum, epsilon=1e-3, name=f"{info.name}_bn")(x)
            x = activate(x, info.layer.activation, info.name)
        return x

    for info in description.walk(batch_norm):
        layer, name = info.layer, info.name
        activation = None if info.normalised or layer.activation == "linear" else layer.activation
        if layer.kind in ("conv", "dw", "pool", "maxpool", "avgpool", "gap", "residual") and not is_map:
            x = layers.Reshape(info.input, name=f"{name}_map")(x)
            is_map = True
        if layer.kind == "conv":
            x = layers.Conv2D(
                layer.number, layer.size, strides=layer.stride, padding=layer.padding,
                activation=activation, use_bias=not info.normalised,
                kernel_initializer=kernel_initializer(keras, init, layer.activation), name=name,
            )(x)
            x = normalise_then_activate(x, info)
        elif layer.kind == "dw":
            x = layers.DepthwiseConv2D(
                layer.size, strides=layer.stride, padding=layer.padding,
                depth_multiplier=layer.number, activation=activation,
                use_bias=not info.normalised,
                depthwise_initializer=kernel_initializer(keras, init, layer.activation), name=name,
            )(x)
            x = normalise_then_activate(x, info)
        elif layer.kind == "pool":
            x = layers.MaxPooling2D(pool_size=(2, 2), name=name)(x)
        elif layer.kind == "maxpool":
            x = layers.MaxPooling2D(layer.size, strides=layer.stride, padding=layer.padding, name=name)(x)
        elif layer.kind == "avgpool":
            x = layers.AveragePooling2D(layer.size, strides=layer.stride, padding=layer.padding,
                                        name=name)(x)
        elif layer.kind == "gap":
            x = layers.GlobalAveragePooling2D(name=name)(x)
            is_map = False
        elif layer.kind == "residual":
            shortcut = x
            if layer.number is not None:
                shortcut = layers.Conv2D(
                    layer.number, (1, 1), strides=layer.stride, padding="same",
                    kernel_initializer=keras.initializers.GlorotUniform(),
                    name=f"{name}_projection",
                )(x)
        elif layer.kind == "add":
            x = layers.Add(name=name)([x, shortcut])
            x = activate(x, layer.activation, name)
            shortcut = None
        elif layer.kind == "drop":
            x = layers.Dropout(layer.number / 1000, name=name)(x)
        elif layer.kind == "flatten":
            x = layers.Flatten(name=name)(x)
            is_map = False
        elif layer.kind == "dense":
            if is_map:  # a 1x1xC map: the core sees a vector
                x = layers.Reshape((info.input[2],), name=f"{name}_vector")(x)
                is_map = False
            x = layers.Dense(
                layer.number, activation=activation, use_bias=not info.normalised,
                kernel_initializer=kernel_initializer(keras, init, layer.activation), name=name,
            )(x)
            x = normalise_then_activate(x, info)
        elif layer.kind == "softmax":
            x = layers.Softmax(name=name)(x)
        else:
            raise DescriptionError(f"layer {info.index + 1} ({name}): no Keras layer for `{layer.word}`")
    return keras.Model(inputs, x, name="tinycnn_description")


def make_optimizer(keras, args, steps_per_epoch):
    learning_rate = args.lr
    if args.lr_schedule[0] == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(
            args.lr, decay_steps=args.epochs * steps_per_epoch, alpha=0.0
        )
    weight_decay = args.weight_decay if args.weight_decay > 0 else None
    if args.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate, weight_decay=weight_decay)
    return keras.optimizers.Adagrad(
        learning_rate=learning_rate,
        initial_accumulator_value=INITIAL_ACCUMULATOR,
        epsilon=args.adagrad_epsilon,
        weight_decay=weight_decay,
    )


def make_epoch_timer(keras, total_epochs):
    """A callback that times each epoch's training and test evaluation and prints them.

    Keras evaluates `validation_data` at the end of each epoch, between on_test_begin and
    on_test_end, before on_epoch_end: training is on_epoch_begin to on_test_begin.
    """

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epochs = []

        def on_epoch_begin(self, epoch, logs=None):
            # After a LearningRateScheduler's on_epoch_begin: the epoch's first rate.
            rate = self.model.optimizer.learning_rate
            # A float32 variable: 7 significant digits give its value back (0.01, not 0.00999...).
            self.rate = float(f"{float(keras.ops.convert_to_numpy(rate)):.7g}")
            self.began = time.perf_counter()
            self.cpu_began = time.process_time()
            self.tested = self.cpu_tested = None

        def on_test_begin(self, logs=None):
            # Also called by an evaluate() outside fit, where there is no epoch to time.
            if getattr(self, "began", None) is not None and self.tested is None:
                self.tested = time.perf_counter()
                self.cpu_tested = time.process_time()

        def on_epoch_end(self, epoch, logs=None):
            ended = time.perf_counter()
            logs = logs or {}
            tested = self.tested if self.tested is not None else ended
            cpu_tested = self.cpu_tested if self.cpu_tested is not None else time.process_time()
            record = {
                "epoch": epoch + 1,
                "train_seconds": round(tested - self.began, 3),
                "train_cpu_seconds": round(cpu_tested - self.cpu_began, 3),
                "eval_seconds": round(ended - tested, 3),
                "epoch_seconds": round(ended - self.began, 3),
                "train_loss": round(float(logs["loss"]), 6),
                "train_accuracy": round(float(logs["accuracy"]), 6),
                "test_loss": round(float(logs["val_loss"]), 6),
                "test_accuracy": round(float(logs["val_accuracy"]), 6),
                "learning_rate": self.rate,
            }
            self.epochs.append(record)
            self.began = None
            print(
                f"epoch {epoch + 1}/{total_epochs}: training {record['train_seconds']:.1f} s "
                f"(loss {record['train_loss']:.4f}, accuracy {100 * record['train_accuracy']:.2f} %), "
                f"test loss {record['test_loss']:.4f}, accuracy {100 * record['test_accuracy']:.2f} % "
                f"(evaluation {record['eval_seconds']:.1f} s, epoch with it {record['epoch_seconds']:.1f} s)",
                flush=True,
            )

    return EpochTimer()


def fail(message):
    print(f"keras-reference.py: error: {message}", file=sys.stderr)
    return 1


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # The tutorial's network is built as it always was unless something asks for another.
    tutorial = args.arch is None and not args.batch_norm and args.init == "glorot-uniform"
    if args.bn_momentum >= 1:
        return fail(f"--bn-momentum {args.bn_momentum:g}: it must be below 1")

    if args.parse_only:
        side = args.pad_to or SIDE
        try:
            description = parse_description(
                args.arch or TUTORIAL.format(classes=CLASSES), (side, side, args.channels)
            )
        except DescriptionError as err:
            return fail(f"--arch: {err}")
        print(description)
        print(layer_table(description, args.batch_norm))
        return 0

    if np is None:
        return fail("numpy is missing: run through scripts/keras-reference.sh, which installs it")

    # The data first: a missing file should not wait for TensorFlow to load.
    data_dir = args.data
    if not data_dir.is_dir():
        return fail(
            f"{data_dir} is not a directory; fetch MNIST with "
            "`cargo run --release --bin host -- data --download` (into data/mnist) "
            "or point --data at the four IDX files"
        )
    try:
        train_images, y_train = load_split(data_dir, "train", args.limit)
        test_images, y_test = load_split(data_dir, "test", args.test_limit)
        x_train, x_test = prepare(train_images, args), prepare(test_images, args)
    except DataError as err:
        return fail(str(err))
    # As host train counts an IDX set's classes: one more than the largest label, at least ten.
    classes = max(MIN_IDX_CLASSES, int(max(y_train.max(), y_test.max())) + 1)
    data_shape = x_train.shape[1:]

    try:
        description = parse_description(
            args.arch or TUTORIAL.format(classes=classes), data_shape
        )
    except DescriptionError as err:
        return fail(f"--arch: {err}")
    # Other pictures than 28x28x1: the tutorial's layers on them, as host train builds them.
    tutorial = tutorial and data_shape == (SIDE, SIDE, 1)
    if description.values:
        return fail("--arch: the description ends in output:values; the peer trains classifiers")
    if _is_vector(description.input) and description.input[2] == int(np.prod(data_shape)):
        x_train = x_train.reshape(len(x_train), -1)
        x_test = x_test.reshape(len(x_test), -1)
    elif description.input != data_shape:
        return fail(
            f"--arch takes input:{_fmt(description.input)} but the pictures are "
            f"{_fmt(data_shape)} (--pad-to SIDE and --channels 3 frame and colour them)"
        )
    infos = description.walk(args.batch_norm)
    logits = infos[-2] if infos[-1].layer.kind == "softmax" else infos[-1]
    if logits.layer.number != classes:
        return fail(
            f"--arch: the last dense layer gives {logits.layer.number} classes, the data has "
            f"{classes} (labels 0 to {classes - 1})"
        )
    print(
        f"data: {data_dir}: {len(x_train)} training and {len(x_test)} test images",
        flush=True,
    )

    # Keep TensorFlow's warnings and errors, not its informational messages.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import keras

    if args.threads is not None:
        # Must happen before TensorFlow runs its first op.
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    keras.utils.set_random_seed(args.seed)

    y_train_hot = keras.utils.to_categorical(y_train, classes)
    y_test_hot = keras.utils.to_categorical(y_test, classes)
    steps_per_epoch = math.ceil(len(x_train) / args.batch_size)
    if tutorial:
        model = build_tutorial(keras, classes)
        loss = "categorical_crossentropy"
    else:
        model = build_network(keras, description, args.batch_norm, args.init, args.bn_momentum)
        # On the softmax's output when there is one (Keras then takes the logits before it).
        from_logits = infos[-1].layer.kind != "softmax"
        loss = keras.losses.CategoricalCrossentropy(from_logits=from_logits)
    model.compile(
        optimizer=make_optimizer(keras, args, steps_per_epoch),
        loss=loss,
        metrics=["accuracy"],
    )
    expected = keras_parameters(description, args.batch_norm)
    if model.count_params() != expected:
        return fail(
            f"the Keras model has {model.count_params():,} parameters, the description "
            f"{expected:,}: the script builds a layer wrongly (a bug to report)"
        )

    if not tutorial:
        normalised = f" with batch normalisation (momentum {args.bn_momentum:g})"
        print(f"network: {description}" + (normalised if args.batch_norm else ""), flush=True)
    recipe = f"batch {args.batch_size}, "
    if args.optimizer == "adagrad":
        recipe += f"Adagrad lr {args.lr} epsilon {args.adagrad_epsilon:g}"
    else:
        recipe += f"Adam lr {args.lr}"
    if args.lr_schedule != ("constant",):
        recipe += f" schedule {schedule_text(args.lr_schedule)}"
    if args.weight_decay > 0:
        recipe += f" weight decay {args.weight_decay:g}"
    if args.init != "glorot-uniform":
        recipe += f" init {args.init}"
    print(
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, numpy {np.__version__}; "
        f"{model.count_params():,} parameters; {recipe}, seed {args.seed}, threads "
        f"{args.threads if args.threads is not None else 'default'}",
        flush=True,
    )

    callbacks = []
    if args.lr_schedule[0] == "step":
        _, every, factor = args.lr_schedule
        callbacks.append(
            keras.callbacks.LearningRateScheduler(
                lambda epoch, rate: args.lr * factor ** (epoch // every)
            )
        )
    timer = make_epoch_timer(keras, args.epochs)
    callbacks.append(timer)
    fit_started = time.perf_counter()
    # One fit for all epochs, as a Keras user trains: calling fit once per epoch would add
    # the teardown of its input pipeline (seconds) to every epoch.
    model.fit(
        x_train,
        y_train_hot,
        batch_size=args.batch_size,
        epochs=args.epochs,
        shuffle=True,
        validation_data=(x_test, y_test_hot),
        callbacks=callbacks,
        verbose=1 if args.verbose else 0,
    )
    fit_seconds = time.perf_counter() - fit_started
    epochs_log = timer.epochs
    train_seconds = [e["train_seconds"] for e in epochs_log]
    final = epochs_log[-1]

    summary = {
        "peer": "keras-reference",
        "data": str(data_dir),
        "epochs": args.epochs,
        "seconds_per_epoch": train_seconds,
        "mean_seconds_per_epoch": round(sum(train_seconds) / len(train_seconds), 3),
        "epoch_seconds_with_eval": [e["epoch_seconds"] for e in epochs_log],
        "fit_seconds": round(fit_seconds, 3),
        "final_test_loss": final["test_loss"],
        "final_test_accuracy": final["test_accuracy"],
        "test_accuracy_per_epoch": [e["test_accuracy"] for e in epochs_log],
        "per_epoch": epochs_log,
        "seed": args.seed,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "optimizer": args.optimizer,
        "learning_rate": args.lr,
        "lr_schedule": schedule_text(args.lr_schedule),
        "weight_decay": args.weight_decay,
        "adagrad_epsilon": args.adagrad_epsilon if args.optimizer == "adagrad" else None,
        "init": args.init,
        "description": str(description),
        "batch_norm": args.batch_norm,
        "bn_momentum": args.bn_momentum if args.batch_norm else None,
        "input": list(data_shape),
        "pad_to": args.pad_to,
        "channels": args.channels,
        "classes": classes,
        "train_images": len(x_train),
        "test_images": len(x_test),
        "parameters": int(model.count_params()),
        "core_parameters": core_parameters(description),
        "macs": core_macs(description),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
