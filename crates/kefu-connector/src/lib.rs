//! kefu-connector: a service between WeChat's Dialogue Open Platform (微信对话开放平台) and a
//! business's agent desk, with the command-line tools that come with it.
//!
//! The binary's subcommands live in the modules below; the library form exists so that the
//! end-to-end tests and the demo can run the pieces in-process.
#![forbid(unsafe_code)]

pub mod api;
pub mod bench;
pub mod cli;
pub mod config;
pub mod console;
mod conversations;
pub mod crypt;
pub mod delivery;
pub mod demo;
pub mod desk;
#[cfg(test)]
mod fleet_double;
pub mod idempotency;
pub mod inbound;
pub mod loopback;
pub mod metrics;
pub mod migrate;
pub mod postgres;
pub mod providers;
mod pulled;
pub mod send;
mod sequencer;
pub mod serve;
mod settle;
pub mod store;
pub mod token;

// The accept loop, the process runtime and the sandbox live in their own crates, so that the
// sandbox can ship without the relay; these names keep their paths here.
pub use kefu_http_server::{self as http_server, runtime};
pub use kefu_sandbox as sandbox;
