//! The `kefu-connector` command line.

use std::process::ExitCode;

use clap::Parser as _;
use kefu_connector::cli::{Cli, Command};

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Crypt(args) => kefu_connector::crypt::run(args),
        Command::Serve(args) => kefu_connector::serve::run(args),
        Command::Send(args) => kefu_connector::send::run(args),
        Command::Sandbox(args) => kefu_connector::sandbox::run(args),
        Command::Demo(args) => kefu_connector::demo::run(args),
        Command::Bench(args) => kefu_connector::bench::run(args),
    }
}
