//! Parity between the host (burn) and the `tinycnn` core.
//!
//! The tests live in `tests/`; this library holds what they share: an
//! independent int8 implementation of the network ([`int8_reference`]).

pub mod int8_reference;
