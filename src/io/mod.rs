//! placeholder

pub mod config;

pub use config::IoConfig;
