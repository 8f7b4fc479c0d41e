//! `kefu-sandbox`: the sandbox on its own, for a CI that tests against it without the relay.
//! The same flags and behaviour as `kefu-connector sandbox`.

use std::process::ExitCode;

use clap::Parser;
use kefu_sandbox::SandboxArgs;

/// WeChat's Dialogue Open Platform and api.weixin.qq.com, emulated on loopback.
#[derive(Parser)]
#[command(name = "kefu-sandbox", version)]
struct Cli {
    #[command(flatten)]
    args: SandboxArgs,
}

fn main() -> ExitCode {
    kefu_sandbox::run(Cli::parse().args)
}
