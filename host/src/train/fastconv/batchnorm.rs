//! Batch normalisation for training with its activation, on plain `f32` slices in burn's
//! layout (`[N][C][inner]`: NCHW maps, or `[N][C]` vectors with `inner` 1): the batch's
//! statistics, the normalised and activated output, and the gradients of the input, the scale
//! (gamma) and the offset (beta).
//!
//! burn computes a training batch norm as a dozen tensor ops, each a full pass over the map with
//! its own allocation, and the activation's mask and backward as more of them: the batch norms
//! of a depthwise-separable network took about half of its training step. Here the forward pass
//! reads the input twice (statistics, then output) and writes once; the backward pass reads the
//! input and the output's gradient twice (per-channel sums, then the input's gradient) and
//! writes the input's gradient over the output's. Nothing else is stored: the backward pass recomputes the normalised values and
//! the activation's mask from the input and the per-channel mean and inverse standard deviation,
//! with the same f32 operations as the forward pass, so the mask is the forward pass's.
//!
//! Per-channel sums are accumulated in f32 over short blocks (16 lanes, at most 16 values each,
//! which vectorises) and the blocks' sums in f64 lanes, so a channel of 10^5 values sums as
//! accurately as in f64 throughout; the statistics are computed about the channel's first value (shifted
//! data), so a large mean does not cancel the variance away. Threads: one rayon task per few
//! images for the sums (a fixed split, added in order, so results do not depend on the number
//! of threads), one per image for the elementwise passes.

use rayon::prelude::*;
use tinycnn::arch::Activation;

use super::zeros::filled;

/// The layout of a batch-normalised tensor: `batch` images, each `channels` runs of `inner`
/// values (`inner` = height x width for a map, 1 for a vector).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NormShape {
    /// Images.
    pub batch: usize,
    /// Channels (features), each with its own statistics, gamma and beta.
    pub channels: usize,
    /// Values of one channel in one image.
    pub inner: usize,
}

impl NormShape {
    /// Values per channel over the whole batch.
    fn count(&self) -> usize {
        self.batch * self.inner
    }

    fn image(&self) -> usize {
        self.channels * self.inner
    }

    /// Channel `c`'s run in image `n`.
    fn run<'a>(&self, values: &'a [f32], n: usize, c: usize) -> &'a [f32] {
        &values[(n * self.channels + c) * self.inner..][..self.inner]
    }
}

/// A channel's statistics as the forward pass applied them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Statistics {
    /// The batch mean of each channel.
    pub mean: Vec<f32>,
    /// The biased (population) batch variance of each channel, without epsilon: what burn's
    /// `batch_norm_train` returns and its running variance takes in.
    pub variance: Vec<f32>,
    /// `1 / sqrt(variance + epsilon)`, each channel's normalising factor.
    pub inv_std: Vec<f32>,
}

/// The per-channel constants of the elementwise passes.
#[derive(Clone, Copy, Debug)]
struct Affine {
    mean: f32,
    inv_std: f32,
    gamma: f32,
    beta: f32,
}

impl Affine {
    /// The normalised value. The only place it is computed, so the backward pass gets the
    /// forward pass's values to the bit.
    #[inline(always)]
    fn normalised(self, x: f32) -> f32 {
        (x - self.mean) * self.inv_std
    }

    /// The value before the activation.
    #[inline(always)]
    fn scaled(self, normalised: f32) -> f32 {
        normalised * self.gamma + self.beta
    }
}

/// The activation of a pre-activation value, as burn's ops compute it: `relu` zeroes values
/// `<= 0`; `clamp(0, 6)` is `mask_fill(> 6, 6)` then `mask_fill(< 0, 0)`.
#[inline(always)]
fn activate(activation: Activation, y: f32) -> f32 {
    match activation {
        Activation::None => y,
        Activation::Relu => {
            if y <= 0.0 {
                0.0
            } else {
                y
            }
        }
        Activation::Relu6 => {
            let y = if y > 6.0 { 6.0 } else { y };
            if y < 0.0 { 0.0 } else { y }
        }
    }
}

/// Whether the gradient passes the activation at pre-activation `y`, as in burn's backward
/// passes: ReLU's where its output is `> 0`; a clamp's where neither mask filled the value.
#[inline(always)]
fn passes(activation: Activation, y: f32) -> bool {
    match activation {
        Activation::None => true,
        Activation::Relu => y > 0.0,
        // `&`, not `&&` (or `contains`): nothing that could become a branch, so that the
        // loops over a run vectorise.
        #[allow(clippy::manual_range_contains)]
        Activation::Relu6 => (y >= 0.0) & (y <= 6.0),
    }
}

/// `value` where `keep`, else 0: a select, not a branch (a ReLU's mask on real data is
/// unpredictable, and a mispredicted branch per value cost more than the pass's memory traffic).
#[inline(always)]
fn kept(keep: bool, value: f32) -> f32 {
    if keep { value } else { 0.0 }
}

const LANES: usize = 16;
/// Values one f32 lane adds up before its sum goes into f64.
const PER_LANE: usize = 16;

/// Images each task of the per-channel sums takes: a fixed split, so that the sums come out
/// the same on any number of threads.
const IMAGES_PER_TASK: usize = 4;

/// Two running sums in f64 lanes: the values come in f32 lanes, `LANES * PER_LANE` at a time,
/// and go into f64 lane by lane (vector additions: no horizontal sum per run, a channel of a
/// 14x14 map coming as 128 runs of 196 values); the lanes are added up once, at the end.
#[derive(Clone, Copy, Debug)]
struct LaneSums {
    first: [f64; LANES],
    second: [f64; LANES],
}

impl LaneSums {
    const ZERO: Self = Self {
        first: [0.0; LANES],
        second: [0.0; LANES],
    };

    /// Adds both halves of `f(x[i], y[i])` over the two equally long slices.
    #[inline(always)]
    fn add(&mut self, x: &[f32], y: &[f32], f: impl Fn(f32, f32) -> (f32, f32)) {
        debug_assert_eq!(x.len(), y.len());
        for (x, y) in x.chunks(LANES * PER_LANE).zip(y.chunks(LANES * PER_LANE)) {
            let (mut a, mut b) = ([0f32; LANES], [0f32; LANES]);
            let (mut xs, mut ys) = (x.chunks_exact(LANES), y.chunks_exact(LANES));
            // Zipped, never indexed by position: an index into the lanes would keep them in
            // memory, one value at a time, instead of in vector registers.
            for (x, y) in (&mut xs).zip(&mut ys) {
                let lanes = a.iter_mut().zip(b.iter_mut()).zip(x.iter().zip(y));
                for ((a, b), (&x, &y)) in lanes {
                    let (u, v) = f(x, y);
                    *a += u;
                    *b += v;
                }
            }
            let rest = xs.remainder().iter().zip(ys.remainder());
            for ((a, b), (&x, &y)) in a.iter_mut().zip(b.iter_mut()).zip(rest) {
                let (u, v) = f(x, y);
                *a += u;
                *b += v;
            }
            for (sum, a) in self.first.iter_mut().zip(a) {
                *sum += f64::from(a);
            }
            for (sum, b) in self.second.iter_mut().zip(b) {
                *sum += f64::from(b);
            }
        }
    }

    fn merge(&mut self, other: &Self) {
        for (sum, other) in self.first.iter_mut().zip(other.first) {
            *sum += other;
        }
        for (sum, other) in self.second.iter_mut().zip(other.second) {
            *sum += other;
        }
    }

    fn totals(&self) -> (f64, f64) {
        (self.first.iter().sum(), self.second.iter().sum())
    }
}

/// Per channel `c`, the sums of both halves of `term(c)(x[i], y[i])` over the channel's values
/// of the two equally shaped tensors. (`term(c)` holds the channel's constants by value: read
/// through a slice inside the loop, the compiler would reload them at every value, for all it
/// knows the sums' stores changed them, and not vectorise.) Image by image, each read front to back (a channel's runs,
/// one per image far apart, read one after the other kept the hardware prefetcher from
/// streaming: twice the time), in tasks of [`IMAGES_PER_TASK`] images whose sums are added in
/// order.
#[inline(always)]
fn channel_sums<T: Fn(f32, f32) -> (f32, f32)>(
    s: &NormShape,
    x: &[f32],
    y: &[f32],
    term: impl Fn(usize) -> T + Sync,
) -> Vec<(f64, f64)> {
    let image = s.image();
    if image == 0 {
        return vec![(0.0, 0.0); s.channels];
    }
    let parts: Vec<Vec<LaneSums>> = x
        .par_chunks(IMAGES_PER_TASK * image)
        .zip(y.par_chunks(IMAGES_PER_TASK * image))
        .map(|(x, y)| {
            let mut sums = vec![LaneSums::ZERO; s.channels];
            for (x, y) in x.chunks_exact(image).zip(y.chunks_exact(image)) {
                let runs = x.chunks_exact(s.inner).zip(y.chunks_exact(s.inner));
                for (c, ((x, y), sums)) in runs.zip(&mut sums).enumerate() {
                    sums.add(x, y, term(c));
                }
            }
            sums
        })
        .collect();
    let mut total = vec![LaneSums::ZERO; s.channels];
    for part in &parts {
        for (total, part) in total.iter_mut().zip(part) {
            total.merge(part);
        }
    }
    total.iter().map(LaneSums::totals).collect()
}

/// The batch statistics of `x`, with `epsilon` added to the variance for the inverse standard
/// deviation.
pub fn statistics(shape: &NormShape, x: &[f32], epsilon: f64) -> Statistics {
    let s = *shape;
    assert_eq!(x.len(), s.batch * s.image(), "batch norm: {s:?}");
    // Each channel's first value: the shift of its sums.
    let shifts: Vec<f32> = if s.count() == 0 {
        vec![0.0; s.channels]
    } else {
        (0..s.channels).map(|c| s.run(x, 0, c)[0]).collect()
    };
    let sums = channel_sums(&s, x, x, |c| {
        let shift = shifts[c];
        move |x, _| {
            let d = x - shift;
            (d, d * d)
        }
    });
    let count = s.count().max(1) as f64;
    let mut stats = Statistics::default();
    for (&shift, (sum, squares)) in shifts.iter().zip(sums) {
        let offset = sum / count;
        let variance = (squares / count - offset * offset).max(0.0);
        stats.mean.push((f64::from(shift) + offset) as f32);
        stats.variance.push(variance as f32);
        stats
            .inv_std
            .push((1.0 / (variance + epsilon).sqrt()) as f32);
    }
    stats
}

fn affines(stats: &Statistics, gamma: &[f32], beta: &[f32]) -> Vec<Affine> {
    stats
        .mean
        .iter()
        .zip(&stats.inv_std)
        .zip(gamma.iter().zip(beta))
        .map(|((&mean, &inv_std), (&gamma, &beta))| Affine {
            mean,
            inv_std,
            gamma,
            beta,
        })
        .collect()
}

/// `activation(gamma * (x - mean) * inv_std + beta)` with the batch's statistics, and the
/// statistics.
pub fn forward(
    shape: &NormShape,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f64,
    activation: Activation,
) -> (Vec<f32>, Statistics) {
    let s = *shape;
    assert!(gamma.len() == s.channels && beta.len() == s.channels);
    let stats = statistics(&s, x, epsilon);
    let channels = affines(&stats, gamma, beta);
    let image = s.image();
    let out = filled(
        x.len(),
        image,
        || (),
        |_, n, out| {
            let x = &x[n * image..][..image];
            for ((out, x), affine) in out
                .chunks_exact_mut(s.inner)
                .zip(x.chunks_exact(s.inner))
                .zip(&channels)
            {
                let affine = *affine;
                match activation {
                    Activation::None => normalise_run(affine, Activation::None, x, out),
                    Activation::Relu => normalise_run(affine, Activation::Relu, x, out),
                    Activation::Relu6 => normalise_run(affine, Activation::Relu6, x, out),
                }
            }
        },
    );
    (out, stats)
}

/// One channel's run of the output. Inlined with the activation a constant, so the loop has no
/// branch on it.
#[inline(always)]
fn normalise_run(affine: Affine, activation: Activation, x: &[f32], out: &mut [f32]) {
    for (out, &x) in out.iter_mut().zip(x) {
        *out = activate(activation, affine.scaled(affine.normalised(x)));
    }
}

/// The gradients of a batch norm's input (when asked for), gamma and beta.
#[derive(Debug)]
pub struct Gradients {
    /// Of the input, in its layout, when asked for.
    pub x: Option<Vec<f32>>,
    /// Of gamma, one per channel.
    pub gamma: Vec<f32>,
    /// Of beta, one per channel.
    pub beta: Vec<f32>,
}

/// What [`backward`] needs from the forward pass.
#[derive(Clone, Copy, Debug)]
pub struct BackwardInputs<'a> {
    /// The layout.
    pub shape: NormShape,
    /// The forward pass's input.
    pub x: &'a [f32],
    /// Gamma, one per channel.
    pub gamma: &'a [f32],
    /// Beta, one per channel.
    pub beta: &'a [f32],
    /// Each channel's mean, as the forward pass applied it.
    pub mean: &'a [f32],
    /// Each channel's inverse standard deviation, as the forward pass applied it.
    pub inv_std: &'a [f32],
    /// The activation after the batch norm.
    pub activation: Activation,
}

/// The gradients of [`forward`]'s input, gamma and beta, given `grad`, the gradient of its
/// output. With `g` the output's gradient where the activation passes it (0 elsewhere) and `x̂`
/// the normalised input, per channel over `M` values: `dbeta = Σ g`, `dgamma = Σ g x̂`, and
/// `dx = gamma inv_std (g - dbeta / M - x̂ dgamma / M)`, burn's `batch_norm_train_backward`.
pub fn backward(inputs: &BackwardInputs, grad: &[f32], want_x: bool) -> Gradients {
    let mut values = grad.to_vec();
    let (gamma, beta) = backward_in_place(inputs, &mut values, want_x);
    Gradients {
        x: want_x.then_some(values),
        gamma,
        beta,
    }
}

/// [`backward`], the input's gradient (when asked for) written over the output's, `grad`:
/// value by value, each read just before it is written, and no new buffer to fill. Returns
/// the gradients of gamma and beta.
pub fn backward_in_place(
    inputs: &BackwardInputs,
    grad: &mut [f32],
    want_x: bool,
) -> (Vec<f32>, Vec<f32>) {
    let s = inputs.shape;
    let (x, activation) = (inputs.x, inputs.activation);
    assert!(x.len() == s.batch * s.image() && grad.len() == x.len());
    let stats = Statistics {
        mean: inputs.mean.to_vec(),
        variance: Vec::new(),
        inv_std: inputs.inv_std.to_vec(),
    };
    let channels = affines(&stats, inputs.gamma, inputs.beta);
    let sums = match activation {
        Activation::None => gradient_sums(&s, &channels, Activation::None, x, grad),
        Activation::Relu => gradient_sums(&s, &channels, Activation::Relu, x, grad),
        Activation::Relu6 => gradient_sums(&s, &channels, Activation::Relu6, x, grad),
    };
    let beta_grad: Vec<f32> = sums.iter().map(|&(beta, _)| beta as f32).collect();
    let gamma_grad: Vec<f32> = sums.iter().map(|&(_, gamma)| gamma as f32).collect();
    if want_x && s.image() > 0 {
        let count = s.count().max(1) as f64;
        let terms: Vec<InputTerms> = channels
            .iter()
            .zip(&sums)
            .map(|(&affine, &(beta, gamma))| InputTerms {
                affine,
                scale: affine.gamma * affine.inv_std,
                mean_grad: (beta / count) as f32,
                mean_projection: (gamma / count) as f32,
            })
            .collect();
        grad.par_chunks_mut(s.image())
            .zip(x.par_chunks(s.image()))
            .for_each(|(grad, x)| {
                let runs = grad.chunks_exact_mut(s.inner).zip(x.chunks_exact(s.inner));
                for ((grad, x), &terms) in runs.zip(&terms) {
                    match activation {
                        Activation::None => input_run(terms, Activation::None, x, grad),
                        Activation::Relu => input_run(terms, Activation::Relu, x, grad),
                        Activation::Relu6 => input_run(terms, Activation::Relu6, x, grad),
                    }
                }
            });
    }
    (gamma_grad, beta_grad)
}

/// Per channel, `Σ g` and `Σ g x̂`. Inlined with the activation a constant, so the loops have
/// no branch on it.
#[inline(always)]
fn gradient_sums(
    s: &NormShape,
    channels: &[Affine],
    activation: Activation,
    x: &[f32],
    grad: &[f32],
) -> Vec<(f64, f64)> {
    channel_sums(s, x, grad, |c| {
        let affine = channels[c];
        move |x, grad| {
            let normalised = affine.normalised(x);
            let g = kept(passes(activation, affine.scaled(normalised)), grad);
            (g, g * normalised)
        }
    })
}

/// A channel's constants for its input gradient.
#[derive(Clone, Copy, Debug)]
struct InputTerms {
    affine: Affine,
    /// `gamma * inv_std`.
    scale: f32,
    /// `Σ g / M`.
    mean_grad: f32,
    /// `Σ g x̂ / M`.
    mean_projection: f32,
}

/// One channel's run of the input's gradient, over the output's.
#[inline(always)]
fn input_run(terms: InputTerms, activation: Activation, x: &[f32], grad: &mut [f32]) {
    let affine = terms.affine;
    for (grad, &x) in grad.iter_mut().zip(x) {
        let normalised = affine.normalised(x);
        let g = kept(passes(activation, affine.scaled(normalised)), *grad);
        *grad = terms.scale * ((g - terms.mean_grad) - normalised * terms.mean_projection);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(count: usize, seed: usize, offset: f32) -> Vec<f32> {
        (0..count)
            .map(|i| (((i * 7919 + seed * 104_729) % 2001) as f32 / 500.0) - 2.0 + offset)
            .collect()
    }

    /// The definition in f64: statistics, output, and `loss = Σ out * grad`.
    fn naive(
        s: &NormShape,
        x: &[f64],
        gamma: &[f64],
        beta: &[f64],
        epsilon: f64,
        activation: Activation,
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let count = s.count() as f64;
        let (mut means, mut variances) = (Vec::new(), Vec::new());
        let mut out = vec![0f64; x.len()];
        for c in 0..s.channels {
            let run = |n: usize| {
                x[(n * s.channels + c) * s.inner..][..s.inner]
                    .iter()
                    .copied()
            };
            let mean = (0..s.batch).flat_map(run).sum::<f64>() / count;
            let variance = (0..s.batch)
                .flat_map(run)
                .map(|v| (v - mean).powi(2))
                .sum::<f64>()
                / count;
            for n in 0..s.batch {
                for i in 0..s.inner {
                    let index = (n * s.channels + c) * s.inner + i;
                    let y = (x[index] - mean) / (variance + epsilon).sqrt() * gamma[c] + beta[c];
                    out[index] = match activation {
                        Activation::None => y,
                        Activation::Relu => y.max(0.0),
                        Activation::Relu6 => y.clamp(0.0, 6.0),
                    };
                }
            }
            means.push(mean);
            variances.push(variance);
        }
        (out, means, variances)
    }

    fn shapes() -> Vec<NormShape> {
        [(4, 3, 5), (1, 2, 9), (7, 5, 1), (2, 1, 300), (3, 4, 17)]
            .into_iter()
            .map(|(batch, channels, inner)| NormShape {
                batch,
                channels,
                inner,
            })
            .collect()
    }

    #[test]
    fn forward_is_the_definition() {
        for s in shapes() {
            for activation in [Activation::None, Activation::Relu, Activation::Relu6] {
                // An offset of 1000 checks that a large mean does not swamp the variance.
                for offset in [0.0, 1000.0] {
                    let x = values(s.batch * s.image(), 1, offset);
                    let gamma = values(s.channels, 2, 1.0);
                    let beta = values(s.channels, 3, 0.5);
                    let (out, stats) = forward(&s, &x, &gamma, &beta, 1e-3, activation);
                    let wide = |v: &[f32]| v.iter().map(|&v| f64::from(v)).collect::<Vec<_>>();
                    let (want, means, variances) =
                        naive(&s, &wide(&x), &wide(&gamma), &wide(&beta), 1e-3, activation);
                    for (got, want) in stats.mean.iter().zip(&means) {
                        assert!((f64::from(*got) - want).abs() < 1e-6 * (1.0 + want.abs()));
                    }
                    for (got, want) in stats.variance.iter().zip(&variances) {
                        assert!(
                            (f64::from(*got) - want).abs() < 1e-4 * want.max(1e-3),
                            "{s:?} offset {offset}: variance {got} vs {want}"
                        );
                    }
                    let tolerance = if offset == 0.0 { 1e-5 } else { 1e-2 };
                    for (got, want) in out.iter().zip(&want) {
                        assert!(
                            (f64::from(*got) - want).abs() < tolerance,
                            "{s:?} {activation:?} offset {offset}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    /// Each gradient against a central difference of the definition's `Σ out * grad`, all in
    /// f64.
    #[test]
    fn gradients_are_the_definitions() {
        for s in shapes() {
            for activation in [Activation::None, Activation::Relu, Activation::Relu6] {
                let x = values(s.batch * s.image(), 4, 0.0);
                let gamma = values(s.channels, 5, 2.0);
                let beta = values(s.channels, 6, 0.0);
                let grad = values(x.len(), 7, 0.0);
                let epsilon = 1e-3;
                let (_, stats) = forward(&s, &x, &gamma, &beta, epsilon, activation);
                let inputs = BackwardInputs {
                    shape: s,
                    x: &x,
                    gamma: &gamma,
                    beta: &beta,
                    mean: &stats.mean,
                    inv_std: &stats.inv_std,
                    activation,
                };
                let got = backward(&inputs, &grad, true);
                let wide = |v: &[f32]| v.iter().map(|&v| f64::from(v)).collect::<Vec<f64>>();
                let loss = |x: &[f64], gamma: &[f64], beta: &[f64]| -> f64 {
                    let (out, _, _) = naive(&s, x, gamma, beta, epsilon, activation);
                    out.iter().zip(&grad).map(|(o, g)| o * f64::from(*g)).sum()
                };
                let (x64, gamma64, beta64) = (wide(&x), wide(&gamma), wide(&beta));
                // Small enough that no nudge moves a value across a kink of the activation.
                let h = 1e-5;
                let check = |what: &str, got: &[f32], nudged: &dyn Fn(usize, f64) -> f64| {
                    for (i, g) in got.iter().enumerate() {
                        let want = (nudged(i, h) - nudged(i, -h)) / (2.0 * h);
                        assert!(
                            (f64::from(*g) - want).abs() < 2e-3 * (1.0 + want.abs()),
                            "{what}[{i}] {s:?} {activation:?}: {g} vs {want}"
                        );
                    }
                };
                check("gamma", &got.gamma, &|i, h| {
                    let mut gamma = gamma64.clone();
                    gamma[i] += h;
                    loss(&x64, &gamma, &beta64)
                });
                check("beta", &got.beta, &|i, h| {
                    let mut beta = beta64.clone();
                    beta[i] += h;
                    loss(&x64, &gamma64, &beta)
                });
                check("x", got.x.as_deref().unwrap(), &|i, h| {
                    let mut x = x64.clone();
                    x[i] += h;
                    loss(&x, &gamma64, &beta64)
                });
                assert!(backward(&inputs, &grad, false).x.is_none());
                let mut in_place = grad.clone();
                let (gamma_grad, beta_grad) = backward_in_place(&inputs, &mut in_place, true);
                assert_eq!(
                    (gamma_grad, beta_grad),
                    (got.gamma.clone(), got.beta.clone())
                );
                assert_eq!(Some(in_place), got.x);
            }
        }
    }
}
