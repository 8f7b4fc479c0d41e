//! Running a subcommand's async work from the synchronous `main`: its log lines, its runtime, and
//! stopping services on a signal.

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;

/// Sends log lines to stderr, one JSON object each when `json`, else text; `RUST_LOG` picks the
/// level (default `info`). A subscriber already installed (by an embedding program) is kept.
pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only for a person at a terminal, never into a file or a journal.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Runs `work` on a multi-threaded Tokio runtime. A runtime that cannot start is exit status 1,
/// with the reason on stderr.
pub fn block_on(work: impl Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(work),
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Registers SIGINT and SIGTERM now, and returns a future that resolves on either.
///
/// Register before announcing the listening address: a supervisor or a test may signal as soon as
/// it has read that line, and a signal that arrives before its handler exists kills the process
/// without a graceful stop.
#[cfg(unix)]
pub fn stop_signals() -> std::io::Result<impl Future<Output = ()> + Send> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
pub fn stop_signals() -> std::io::Result<impl Future<Output = ()> + Send> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

/// Prints a service's one startup line on stdout and flushes it, so that a supervisor or a test
/// that asked for port 0 learns the address.
pub fn announce(line: &str) {
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
        tracing::warn!("cannot write the startup line to stdout: {error}");
    }
}
