//! `kefu-connector serve`: the relay between the agent desk and the platform.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use kefu_client::{Client, RetryPolicy};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::api::{self, ApiState};
use crate::config::{Config, LogFormat};
use crate::delivery::Dispatcher;
use crate::http_server;
use crate::inbound::Inbound;
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::runtime::{announce, block_on, stop_signals};

/// How long a stopping service waits for the desk API's requests in flight, then for requests
/// already on their way to the platform.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Arguments of `serve`.
#[derive(Debug, Args)]
#[command(after_long_help = crate::config::settings_help())]
pub struct ServeArgs {
    /// The TOML configuration file. Every setting can also come from its environment variable,
    /// which wins over the file.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    /// The outbox could not be opened.
    #[error("cannot open the outbox: {0}")]
    Outbox(#[from] crate::outbox::StoreError),
    /// The inbound side (callbacks, events, sessions, webhook) could not start.
    #[error("cannot start the inbound side: {0}")]
    Inbound(#[from] crate::inbound::InboundError),
    /// The platform client could not be built.
    #[error("cannot build the platform client: {0}")]
    Client(#[from] kefu_client::Error),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}; is another process using it?")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// A running relay, started in-process (the demo and the tests use this).
pub struct Relay {
    /// The address the desk API listens on.
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Relay {
    /// Opens the outbox, resumes pending work, and starts serving the desk API.
    pub async fn start(config: &Config) -> Result<Relay, ServeError> {
        let api_key = config.api_key()?.clone();
        let (outbox, pending) = Outbox::open(&config.outbox_path)?;
        if !pending.is_empty() {
            tracing::info!(jobs = pending.len(), "resuming stored jobs");
        }
        let dialogue = &config.dialogue;
        let client = platform_client(config)?;
        let policy = retry_policy(config);
        let metrics = Arc::new(Metrics::default());
        let dispatcher = Dispatcher::start(
            outbox.clone(),
            client,
            policy,
            config.delivery.concurrency,
            Arc::clone(&metrics),
            pending,
        );
        let inbound = Inbound::start(outbox.clone(), config, Arc::clone(&metrics)).await?;
        let state = ApiState {
            outbox,
            dispatcher: dispatcher.clone(),
            metrics,
            api_key,
            dialogue: dialogue.clone(),
            inbound: inbound.clone(),
        };
        let app = api::router(state, config.max_body_bytes);
        let listener = match TcpListener::bind(config.listen).await {
            Ok(listener) => listener,
            Err(source) => {
                inbound.shutdown(Duration::ZERO).await;
                return Err(ServeError::Bind {
                    addr: config.listen,
                    source,
                });
            }
        };
        let addr = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
        let (stop, stopped) = oneshot::channel::<()>();
        let limits = config.server_limits;
        let task = tokio::spawn(async move {
            let stopping = inbound.clone();
            let shutdown = async move {
                let _ = stopped.await;
                // Long polls answer now rather than hold the graceful stop up.
                stopping.begin_shutdown();
            };
            let service = |_closer| {
                let app = app.clone();
                move |request: axum::http::Request<http_server::RequestBody>| {
                    // The router is always ready: no `poll_ready` is needed before `call`.
                    let answer = tower_service::Service::call(&mut app.clone(), request);
                    async move {
                        match answer.await {
                            Ok(response) => response,
                            Err(never) => match never {},
                        }
                    }
                }
            };
            http_server::serve(
                listener,
                limits,
                Some("server.max_connections"),
                service,
                shutdown,
                SHUTDOWN_GRACE,
            )
            .await;
            tokio::join!(
                dispatcher.shutdown(SHUTDOWN_GRACE),
                inbound.shutdown(SHUTDOWN_GRACE)
            );
        });
        tracing::info!(%addr, "desk API listening");
        Ok(Relay { addr, stop, task })
    }

    /// Stops accepting requests, lets requests in flight finish, and waits for the deliveries
    /// under way (up to a grace period). Undelivered jobs stay stored for the next start.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// The platform client the configuration describes.
pub fn platform_client(config: &Config) -> Result<Client, kefu_client::Error> {
    let dialogue = &config.dialogue;
    Client::builder(
        dialogue.token.expose(),
        dialogue.aes_key.expose(),
        dialogue.bot_appid.as_str(),
    )
    .base_url(&dialogue.base_url)
    .connect_timeout(dialogue.connect_timeout)
    .request_timeout(dialogue.request_timeout)
    .build()
}

/// The retry policy the configuration describes.
pub fn retry_policy(config: &Config) -> RetryPolicy {
    RetryPolicy::default()
        .with_initial_backoff(config.delivery.initial_backoff)
        .with_max_attempts(config.delivery.max_attempts)
        .with_max_elapsed(config.delivery.max_elapsed)
}

/// Sets up structured logging: `RUST_LOG` picks the level (default `info`), `format` the shape.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Runs `serve` until SIGTERM or SIGINT.
pub fn run(args: ServeArgs) -> ExitCode {
    let config = match Config::load(args.config.as_deref(), |name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log_format);
    block_on(async {
        let stopped = match stop_signals() {
            Ok(stopped) => stopped,
            Err(error) => {
                eprintln!("error: cannot listen for SIGINT and SIGTERM: {error}");
                return ExitCode::FAILURE;
            }
        };
        let relay = match Relay::start(&config).await {
            Ok(relay) => relay,
            Err(error) => {
                tracing::error!("{error}");
                eprintln!("error: {error}");
                return ExitCode::FAILURE;
            }
        };
        announce(&format!(
            "kefu-connector serve: desk API on http://{}",
            relay.addr
        ));
        stopped.await;
        tracing::info!("stopping: finishing requests in flight");
        relay.stop().await;
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}
