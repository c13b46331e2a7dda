//! Adagrad as the Keras peer computes it.
//!
//! Both burn's `AdaGrad` and Keras accumulate squared gradients from zero,
//! `sum += g^2`, but they place epsilon differently:
//!
//! - burn (and Keras 2):  `theta -= lr * g / (sqrt(sum) + eps)`
//! - Keras 3 (what `keras_reference.sh` runs, TensorFlow 2.21):
//!   `theta -= lr * g / sqrt(sum + eps)`
//!
//! With the accumulator starting at zero, burn's first step moves every
//! parameter by the full learning rate whatever its gradient (`g / |g|`),
//! while Keras 3 moves a parameter whose gradient is below `sqrt(eps)`
//! (3.2e-4 for eps = 1e-7) proportionally less. That first step decides a
//! lot in a one-epoch run. This is the peer's optimizer (learning rate 0.01,
//! accumulator from 0), computed the way the peer computes it, as a burn
//! [`Optimizer`] so that modules, autodiff, records and checkpoints stay
//! burn's. `host train` uses epsilon 1e-6 rather than Keras's 1e-7 by default:
//! the measurements are at [`crate::train::DEFAULT_ADAGRAD_EPSILON`].

use burn::optim::{LearningRate, ModuleOptimizer, Optimizer, RecordState, StateSink, StateSource};
use burn::tensor::{Device, Tensor};

/// Keras's default epsilon (inside the square root).
pub const KERAS_EPSILON: f32 = 1e-7;

/// Adagrad with Keras 3's epsilon placement; see the module docs.
#[derive(Clone, Debug)]
pub struct KerasAdagrad {
    epsilon: f32,
    weight_decay: f32,
}

/// Per-parameter state: the running sum of squared gradients.
#[derive(Clone, Debug)]
pub struct KerasAdagradState<const D: usize> {
    /// `sum of g^2` over every step so far.
    pub sum: Tensor<D>,
}

/// Written by hand because burn's `RecordState` derive names paths inside `burn-optim` only.
/// The leaf is called `sum`, as burn's own Adagrad state names its accumulator.
impl<const D: usize> RecordState for KerasAdagradState<D> {
    fn state_flatten(&self, prefix: &str, out: &mut StateSink) {
        out.push_tensor(prefix, "sum", self.sum.to_data());
    }

    fn state_unflatten(prefix: &str, src: &mut StateSource, device: &Device) -> Option<Self> {
        let data = src.take_tensor(prefix, "sum")?;
        if data.shape().len() != D {
            return None;
        }
        Some(Self {
            sum: Tensor::from_data(data, device),
        })
    }
}

impl KerasAdagrad {
    /// An optimizer with the given epsilon (added inside the square root).
    pub fn new(epsilon: f32) -> Self {
        Self {
            epsilon,
            weight_decay: 0.0,
        }
    }

    /// With Keras 3's decoupled weight decay ([`super::adam::decayed`]).
    pub fn with_weight_decay(self, weight_decay: f32) -> Self {
        Self {
            weight_decay,
            ..self
        }
    }

    /// Wrapped for a whole module.
    pub fn init(&self) -> ModuleOptimizer {
        ModuleOptimizer::from(self.clone())
    }
}

impl Optimizer for KerasAdagrad {
    type State<const D: usize> = KerasAdagradState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let tensor = super::adam::decayed(tensor, self.weight_decay, lr);
        let squared = grad.clone().square();
        let sum = match state {
            Some(state) => state.sum.add(squared),
            None => squared,
        };
        let update = grad
            .div(sum.clone().add_scalar(self.epsilon).sqrt())
            .mul_scalar(lr);
        (tensor - update, Some(KerasAdagradState { sum }))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        KerasAdagradState {
            sum: state.sum.to_device(device),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    fn tensor(values: &[f32]) -> Tensor<1> {
        Tensor::from_data(
            TensorData::new(values.to_vec(), [values.len()]),
            &Device::flex(),
        )
    }

    fn values(t: Tensor<1>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn steps_follow_the_keras_formula() {
        let optimizer = KerasAdagrad::new(KERAS_EPSILON);
        let theta = tensor(&[1.0, 1.0, 1.0]);
        let grad = tensor(&[0.5, -1e-4, 0.0]);
        let (after, state) = optimizer.step(0.01, theta, grad.clone(), None);
        let after = values(after);
        // 1 - 0.01 * 0.5 / sqrt(0.25 + 1e-7): almost the full learning rate.
        assert!((after[0] - (1.0 - 0.01 * 0.5 / (0.25f32 + 1e-7).sqrt())).abs() < 1e-7);
        // A small gradient moves less than the learning rate (burn's placement
        // would move it by 0.01 * 1e-4 / (1e-4 + 1e-7) ~ 0.00999).
        let moved = after[1] - 1.0;
        let expected = 0.01 * 1e-4 / (1e-8f32 + 1e-7).sqrt();
        assert!((moved - expected).abs() < 1e-6, "{moved} vs {expected}");
        assert!(moved < 0.0035);
        assert_eq!(after[2], 1.0);
        // The second step divides by the accumulated sum.
        let (after2, state2) = optimizer.step(0.01, tensor(&after), grad, state);
        let sum = values(state2.unwrap().sum);
        assert!((sum[0] - 0.5).abs() < 1e-6);
        let second = values(after2)[0] - after[0];
        assert!((second + 0.01 * 0.5 / (0.5f32 + 1e-7).sqrt()).abs() < 1e-7);
    }
}
