//! The `kefu-connector` command line.

use std::process::ExitCode;

use clap::Parser as _;
use kefu_connector::cli::{Cli, Command};

/// jemalloc rather than glibc's malloc: after thousands of connections come and go, glibc keeps
/// the memory they freed (5,000 slow connections, three times over: 19 MB at rest, 144 MB after
/// they had gone, for good), while jemalloc's background thread returns it within about 20 s
/// (25 MB).
#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    // Many systems set a soft limit of 1,024 open files under a far higher hard limit; like Go's
    // runtime, take the hard limit, so that server.max_connections' default fits. Where that
    // fails, serve says so at start, naming both numbers.
    #[cfg(unix)]
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    match Cli::parse().command {
        Command::Crypt(args) => kefu_connector::crypt::run(args),
        Command::Serve(args) => kefu_connector::serve::run(args),
        Command::Migrate(args) => kefu_connector::migrate::run(args),
        Command::Send(args) => kefu_connector::send::run(args),
        Command::Sandbox(args) => kefu_connector::sandbox::run(args),
        Command::Demo(args) => kefu_connector::demo::run(args),
        Command::Bench(args) => kefu_connector::bench::run(args),
        Command::Token(args) => kefu_connector::token::run(args),
        Command::Console(args) => kefu_connector::console::password::run(args),
    }
}
