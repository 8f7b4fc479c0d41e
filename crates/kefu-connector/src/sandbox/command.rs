//! The `sandbox` subcommand: its arguments and `run`.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::faults::parse_rate;
use super::{DEFAULT_MAX_MESSAGES, Sandbox, SandboxConfig};
use crate::config::LogFormat;

/// Arguments of `sandbox`.
///
/// The credentials read the same environment variables as `serve`, so that both sides of a demo
/// share them.
#[derive(Debug, Args)]
#[command(after_long_help = AFTER_HELP)]
pub struct SandboxArgs {
    /// Where to listen; port 0 picks a free one (the startup line tells which).
    #[arg(long, default_value = "127.0.0.1:8090", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// The TOKEN every platform URL must carry.
    #[arg(long, env = "KEFU_DIALOGUE_TOKEN", hide_env_values = true)]
    pub token: String,
    /// The 43-character EncodingAESKey.
    #[arg(long, env = "KEFU_DIALOGUE_AES_KEY", hide_env_values = true)]
    pub aes_key: String,
    /// The bot APPID: the receive-id of every ciphertext, both ways.
    #[arg(long, env = "KEFU_DIALOGUE_BOT_APPID")]
    pub appid: String,
    /// Where to push the handoff callbacks of simulated users (http:// only), such as the
    /// connector's callback endpoint.
    #[arg(long, value_name = "URL")]
    pub callback_url: Option<String>,
    /// Delay before answering each platform request, in milliseconds.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub latency_ms: u64,
    /// Fraction of platform requests answered {"success":false,"code":-1,…} (0.0 to 1.0).
    #[arg(long, default_value_t = 0.0, value_name = "RATE", value_parser = parse_rate)]
    pub system_error_rate: f64,
    /// Fraction of platform requests read and then dropped without an answer (0.0 to 1.0).
    #[arg(long, default_value_t = 0.0, value_name = "RATE", value_parser = parse_rate)]
    pub drop_rate: f64,
    /// Seed of the fault RNG: the same seed and requests give the same faults [default: random,
    /// printed at startup].
    #[arg(long)]
    pub seed: Option<u64>,
    /// How many accepted messages to keep for GET /sandbox/messages; the oldest go first.
    #[arg(long, default_value_t = DEFAULT_MAX_MESSAGES, value_name = "N")]
    pub max_messages: usize,
}

const AFTER_HELP: &str = "\
Routes:
  POST /openapi/sendmsg/{TOKEN}            the platform's sendmsg
  POST /openapi/kefustate/get/{TOKEN}      the platform's kefustate/get
  POST /openapi/kefustate/change/{TOKEN}   the platform's kefustate/change
  GET  /sandbox/messages[?openid=…]        accepted messages, decrypted, in order
  GET  /sandbox/users/{openid}             a user's handoff state
  POST /sandbox/users/{openid}/say         play the user: {\"text\": \"我要转人工\"} → callback

On startup one line goes to stdout:
  sandbox listening addr=127.0.0.1:8090 base_url=http://127.0.0.1:8090/openapi seed=…
Point the connector's dialogue.base_url at base_url. SIGINT or SIGTERM stops the sandbox.";

impl SandboxArgs {
    /// The in-process configuration these arguments describe.
    pub fn to_config(&self) -> SandboxConfig {
        SandboxConfig {
            listen: self.listen,
            token: self.token.clone(),
            aes_key: self.aes_key.clone(),
            appid: self.appid.clone(),
            callback_url: self.callback_url.clone(),
            latency: Duration::from_millis(self.latency_ms),
            system_error_rate: self.system_error_rate,
            drop_rate: self.drop_rate,
            seed: self.seed,
            max_messages: self.max_messages,
        }
    }
}

/// Runs the sandbox until SIGINT or SIGTERM.
///
/// Prints `sandbox listening addr=<addr> base_url=<url> seed=<n>` on stdout once listening.
/// Exits 2 on an invalid setting, 1 when it cannot listen.
pub fn run(args: SandboxArgs) -> ExitCode {
    crate::serve::init_logging(LogFormat::Text);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        // Listen for the signals before announcing the address: a supervisor or a test may send
        // one as soon as it has read the startup line.
        let stopped = match crate::serve::stop_signals() {
            Ok(stopped) => stopped,
            Err(error) => {
                eprintln!("error: cannot listen for SIGINT and SIGTERM: {error}");
                return ExitCode::FAILURE;
            }
        };
        let sandbox = match Sandbox::start(args.to_config()).await {
            Ok(sandbox) => sandbox,
            Err(error) => {
                eprintln!("error: {error}");
                return if error.is_config() {
                    ExitCode::from(2)
                } else {
                    ExitCode::FAILURE
                };
            }
        };
        let mut stdout = std::io::stdout().lock();
        let printed = writeln!(
            stdout,
            "sandbox listening addr={} base_url={} seed={}",
            sandbox.addr(),
            sandbox.base_url(),
            sandbox.seed()
        )
        .and_then(|()| stdout.flush());
        drop(stdout);
        if let Err(error) = printed {
            tracing::warn!("cannot write the startup line to stdout: {error}");
        }
        stopped.await;
        tracing::info!("stopping the sandbox");
        sandbox.stop().await;
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: SandboxArgs,
    }

    const BASE: [&str; 7] = [
        "sandbox",
        "--token",
        "T",
        "--aes-key",
        "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
        "--appid",
        "A",
    ];

    fn parse(extra: &[&str]) -> Result<SandboxArgs, clap::Error> {
        let mut argv = BASE.to_vec();
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).map(|cli| cli.args)
    }

    #[test]
    fn defaults_and_faults() {
        let args = parse(&[]).unwrap();
        let config = args.to_config();
        assert_eq!(config.listen, "127.0.0.1:8090".parse().unwrap());
        assert_eq!((config.drop_rate, config.system_error_rate), (0.0, 0.0));
        assert_eq!(config.seed, None);
        let args = parse(&[
            "--listen",
            "127.0.0.1:0",
            "--latency-ms",
            "25",
            "--drop-rate",
            "0.5",
            "--system-error-rate",
            "1",
            "--seed",
            "7",
            "--callback-url",
            "http://127.0.0.1:9/cb",
        ])
        .unwrap();
        let config = args.to_config();
        assert_eq!(config.latency, Duration::from_millis(25));
        assert_eq!((config.drop_rate, config.system_error_rate), (0.5, 1.0));
        assert_eq!(config.seed, Some(7));
        assert_eq!(
            config.callback_url.as_deref(),
            Some("http://127.0.0.1:9/cb")
        );
    }

    #[test]
    fn rates_out_of_range_are_clap_errors() {
        let err = parse(&["--drop-rate", "1.5"]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("--drop-rate"), "{text}");
        assert!(text.contains("1.5 is outside 0.0..=1.0"), "{text}");
        let text = parse(&["--system-error-rate", "lots"])
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("--system-error-rate") && text.contains("not a number"),
            "{text}"
        );
    }
}
