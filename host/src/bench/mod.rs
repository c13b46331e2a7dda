//! Speed: `host bench train` ([`train`]: a training step, operation by operation) and
//! `host bench infer` ([`infer`]: single images through the core and burn; [`model`]: any int8
//! model beside TensorFlow Lite). [`usage`] supplies
//! CPU time, peak memory and load.

pub mod infer;
pub mod model;
pub mod train;
pub mod usage;
