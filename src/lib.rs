//! synguard: an inline SYN-flood defense gateway.
//!
//! Layers, dependencies pointing one way (see README and design notes):
//! `wire` <- `cookie` <- `engine` <- `io` <- `main`; `metrics` reads engine
//! counters, `config` feeds everything.

pub mod config;
pub mod control;
pub mod cookie;
pub mod engine;
pub mod flow_file;
pub mod gateway;
pub mod io;
pub mod metrics;
pub mod reload;
pub mod wire;
