//! The local control endpoint: a Unix socket on which the running gateway
//! answers `synguard status` with counts by state and the connection list
//! (SYN_RECV entries like `ss state syn-recv`). One JSON request line, one
//! JSON reply line. Reads engine state through `engine::status::StatusView`;
//! never changes it, never serves the network.

pub mod client;
pub mod protocol;
pub mod server;

pub use client::{query, render_text, ControlError};
pub use protocol::{Reply, StatusReply, StatusRequest};
pub use server::ControlServer;
