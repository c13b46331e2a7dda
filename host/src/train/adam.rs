//! Adam as Keras 3 computes it, and the decoupled weight decay Keras 3's optimizers share.
//!
//! Keras 3 (what `scripts/keras-reference.sh` runs) folds both bias corrections into the step
//! size and adds epsilon to the uncorrected square root:
//!
//! ```text
//! t     = step number, from 1
//! m     = m + (g - m) * (1 - beta_1)
//! v     = v + (g^2 - v) * (1 - beta_2)
//! alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
//! theta = theta - alpha * m / (sqrt(v) + epsilon)
//! ```
//!
//! burn's own Adam scales epsilon by `sqrt(1 - beta_2^t)`, which moves a parameter with a tiny
//! gradient differently in the first steps; like [`super::adagrad::KerasAdagrad`], this is the
//! peer's formula as a burn [`Optimizer`], so that modules, autodiff, records and checkpoints
//! stay burn's. Its defaults are Keras's: `beta_1` 0.9, `beta_2` 0.999, epsilon 1e-7, learning
//! rate 0.001.
//!
//! Weight decay, when asked for, is Keras 3's for every optimizer: before the update,
//! `theta = theta - theta * weight_decay * lr` (decoupled from the gradient, as in AdamW), on
//! every parameter, biases included.

use burn::optim::{LearningRate, ModuleOptimizer, Optimizer, RecordState, StateSink, StateSource};
use burn::tensor::{Device, Tensor, TensorData};

/// Keras's `beta_1`: how much of the gradient's running mean each step keeps.
pub const KERAS_BETA_1: f32 = 0.9;
/// Keras's `beta_2`: how much of the squared gradient's running mean each step keeps.
pub const KERAS_BETA_2: f32 = 0.999;
/// Keras's epsilon for Adam (added to the square root).
pub const KERAS_EPSILON: f32 = 1e-7;
/// Keras's default learning rate for Adam.
pub const KERAS_LEARNING_RATE: f64 = 0.001;

/// Adam with Keras 3's formula; see the module docs.
#[derive(Clone, Debug)]
pub struct KerasAdam {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    weight_decay: f32,
}

/// Per-parameter state: the step count and both running means.
#[derive(Clone, Debug)]
pub struct KerasAdamState<const D: usize> {
    /// Steps taken so far (the `t` of the last step).
    pub steps: u64,
    /// Running mean of the gradients.
    pub mean: Tensor<D>,
    /// Running mean of the squared gradients.
    pub mean_square: Tensor<D>,
}

/// Written by hand, as [`super::adagrad::KerasAdagradState`]'s is. The step count is a tensor
/// of one `u64`: this crate does not depend on burn's scalar type.
impl<const D: usize> RecordState for KerasAdamState<D> {
    fn state_flatten(&self, prefix: &str, out: &mut StateSink) {
        out.push_tensor(prefix, "steps", TensorData::new(vec![self.steps], [1]));
        out.push_tensor(prefix, "moment_1", self.mean.to_data());
        out.push_tensor(prefix, "moment_2", self.mean_square.to_data());
    }

    fn state_unflatten(prefix: &str, src: &mut StateSource, device: &Device) -> Option<Self> {
        let steps = src.take_tensor(prefix, "steps")?.try_to_vec::<u64>().ok()?;
        let mean = src.take_tensor(prefix, "moment_1")?;
        let mean_square = src.take_tensor(prefix, "moment_2")?;
        if mean.shape().len() != D || mean_square.shape() != mean.shape() {
            return None;
        }
        Some(Self {
            steps: *steps.first()?,
            mean: Tensor::from_data(mean, device),
            mean_square: Tensor::from_data(mean_square, device),
        })
    }
}

impl KerasAdam {
    /// Keras's Adam ([`KERAS_BETA_1`], [`KERAS_BETA_2`], [`KERAS_EPSILON`]) with
    /// `weight_decay` (0 for none).
    pub fn new(weight_decay: f32) -> Self {
        Self {
            beta_1: KERAS_BETA_1,
            beta_2: KERAS_BETA_2,
            epsilon: KERAS_EPSILON,
            weight_decay,
        }
    }

    /// Wrapped for a whole module.
    pub fn init(&self) -> ModuleOptimizer {
        ModuleOptimizer::from(self.clone())
    }
}

/// `tensor` after Keras 3's decoupled weight decay at learning rate `lr`.
pub fn decayed<const D: usize>(
    tensor: Tensor<D>,
    weight_decay: f32,
    lr: LearningRate,
) -> Tensor<D> {
    if weight_decay == 0.0 {
        return tensor;
    }
    // Keras multiplies in float32: the variable by the decay, then by the learning rate.
    let factor = weight_decay * lr as f32;
    tensor.clone() - tensor.mul_scalar(factor)
}

impl Optimizer for KerasAdam {
    type State<const D: usize> = KerasAdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let tensor = decayed(tensor, self.weight_decay, lr);
        let (steps, mean, mean_square) = match state {
            Some(state) => (state.steps, state.mean, state.mean_square),
            None => (0, grad.zeros_like(), grad.zeros_like()),
        };
        let steps = steps + 1;
        let mean = mean.clone() + (grad.clone() - mean).mul_scalar(1.0 - self.beta_1);
        let mean_square =
            mean_square.clone() + (grad.square() - mean_square).mul_scalar(1.0 - self.beta_2);
        // Keras computes the step size in float32, the powers from the step count as a float.
        let t = steps as f32;
        let alpha = lr as f32 * (1.0 - self.beta_2.powf(t)).sqrt() / (1.0 - self.beta_1.powf(t));
        let update = mean
            .clone()
            .mul_scalar(alpha)
            .div(mean_square.clone().sqrt().add_scalar(self.epsilon));
        let state = KerasAdamState {
            steps,
            mean,
            mean_square,
        };
        (tensor - update, Some(state))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        KerasAdamState {
            steps: state.steps,
            mean: state.mean.to_device(device),
            mean_square: state.mean_square.to_device(device),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(values: &[f32]) -> Tensor<1> {
        Tensor::from_data(
            TensorData::new(values.to_vec(), [values.len()]),
            &Device::flex(),
        )
    }

    fn values(t: Tensor<1>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    /// Three steps against the formula computed here in f64, independently of the tensors.
    #[test]
    fn steps_follow_the_keras_formula() {
        let optimizer = KerasAdam::new(0.0);
        let grads = [[0.5, -1e-4, 0.0], [0.25, 2e-4, 0.0], [-0.5, -1e-4, 1.0]];
        let lr = 0.001;
        let mut theta = [1.0f64, 1.0, 1.0];
        let (mut m, mut v) = ([0.0f64; 3], [0.0f64; 3]);
        let mut current = tensor(&[1.0, 1.0, 1.0]);
        let mut state = None;
        for (step, grad) in grads.iter().enumerate() {
            let t = (step + 1) as i32;
            let alpha = lr * (1.0 - 0.999f64.powi(t)).sqrt() / (1.0 - 0.9f64.powi(t));
            for i in 0..3 {
                let g = f64::from(grad[i] as f32);
                m[i] += (g - m[i]) * 0.1;
                v[i] += (g * g - v[i]) * (1.0 - 0.999);
                theta[i] -= alpha * m[i] / (v[i].sqrt() + 1e-7);
            }
            let grad = tensor(&grad.map(|g| g as f32));
            (current, state) = optimizer.step(lr, current, grad, state);
            let got = values(current.clone());
            for i in 0..3 {
                assert!((f64::from(got[i]) - theta[i]).abs() < 1e-6, "{step} {i}");
            }
        }
        assert_eq!(state.as_ref().map(|state| state.steps), Some(3));
    }

    #[test]
    fn weight_decay_is_decoupled() {
        let optimizer = KerasAdam::new(0.1);
        let (after, _) = optimizer.step(0.01, tensor(&[2.0]), tensor(&[0.0]), None);
        // Zero gradient: only the decay moves it, by theta * 0.1 * 0.01.
        assert!((values(after)[0] - (2.0 - 2.0 * 0.001)).abs() < 1e-6);
    }

    #[test]
    fn state_round_trips() {
        let optimizer = KerasAdam::new(0.0);
        let (_, state) = optimizer.step(0.001, tensor(&[1.0, 2.0]), tensor(&[0.5, -0.5]), None);
        let state = state.unwrap();
        let mut sink = StateSink::default();
        state.state_flatten("p", &mut sink);
        let mut source = StateSource::default();
        for (name, data) in sink.tensors {
            source.insert_tensor(name, data);
        }
        let back = KerasAdamState::<1>::state_unflatten("p", &mut source, &Device::flex()).unwrap();
        assert_eq!(back.steps, 1);
        assert_eq!(values(back.mean), values(state.mean));
        assert_eq!(values(back.mean_square), values(state.mean_square));
    }
}
