//! placeholder

pub mod config;

pub use config::{EngineConfig, InvalidAckAction};
