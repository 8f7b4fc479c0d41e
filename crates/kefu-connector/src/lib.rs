//! kefu-connector: a service between WeChat's Dialogue Open Platform (微信对话开放平台) and a
//! business's agent desk, with the command-line tools that come with it.
//!
//! The binary's subcommands live in the modules below; the library form exists so that the
//! end-to-end tests and the demo can run the pieces in-process.
#![forbid(unsafe_code)]

pub mod api;
pub mod bench;
pub mod cli;
pub mod clock;
pub mod config;
mod conversations;
pub mod crypt;
pub mod delivery;
pub mod demo;
pub mod desk;
pub mod http_server;
pub mod idempotency;
pub mod inbound;
pub mod loopback;
pub mod metrics;
pub mod providers;
pub mod runtime;
pub mod sandbox;
pub mod send;
pub mod serve;
pub mod store;
