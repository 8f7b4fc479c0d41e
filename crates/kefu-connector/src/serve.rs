//! `kefu-connector serve`: the relay between the agent desk and the platform.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use kefu_client::Client;
use kefu_client::dialogue::DialogueProvider;
use kefu_client::gateway::GatewayProvider;
use kefu_client::kefu_payload::cgibin::AccountKind as CgiAccountKind;
use kefu_client::wechat::WechatProvider;
use kefu_client::yunzhenji::YunzhenjiProvider;
use kefu_core::RetryPolicy;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::api::{self, ApiState};
use crate::config::{AccountKind, Config, LogFormat};
use crate::delivery::Dispatcher;
use crate::http_server::{self, ServerLimits};
use crate::inbound::Inbound;
use crate::metrics::Metrics;
use crate::providers::Providers;
use crate::runtime::{announce, block_on, stop_signals};
use crate::store::sqlite::SqliteStore;
use crate::store::{DIALOGUE_ACCOUNT, PendingJob, Store};

/// How long a stopping service waits for the desk API's requests in flight, then for requests
/// already on their way to the platform.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Arguments of `serve`.
#[derive(Debug, Args)]
#[command(after_long_help = crate::config::settings_help())]
pub struct ServeArgs {
    /// The TOML configuration file [default: ./kefu.toml if it exists]. Every setting can also
    /// come from its environment variable, which wins over the file.
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
    Outbox(#[from] crate::store::StoreError),
    /// The PostgreSQL database of `[store] url` could not be used (its text names no secret).
    #[error("{0}")]
    Postgres(#[from] kefu_store_postgres::PgError),
    /// The inbound side (callbacks, events, sessions, webhook) could not start.
    #[error("cannot start the inbound side: {0}")]
    Inbound(#[from] crate::inbound::InboundError),
    /// The platform client could not be built.
    #[error("cannot build the platform client: {0}")]
    Client(#[from] kefu_client::Error),
    /// A `[wechat.<name>]` account cannot send as configured.
    #[error("account {account}: {reason}")]
    Account {
        /// The account's name.
        account: String,
        /// What is wrong (never the AppSecret).
        reason: String,
    },
    /// The directory of `outbox.path` does not exist.
    #[error(
        "the directory {dir} of outbox.path does not exist; create it (mkdir -p {dir}) or set outbox.path (KEFU_OUTBOX_PATH) to a file in an existing directory"
    )]
    OutboxDirectory {
        /// The missing directory, as configured.
        dir: String,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}; is another process using it?")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

impl ServeError {
    /// Whether the configuration is at fault (exit status 2) rather than the machine.
    pub fn is_config(&self) -> bool {
        use kefu_store_postgres::PgError;
        matches!(
            self,
            ServeError::Config(_)
                | ServeError::Account { .. }
                | ServeError::OutboxDirectory { .. }
                | ServeError::Postgres(
                    PgError::Config(_)
                        | PgError::SchemaTooNew { .. }
                        | PgError::SchemaBehind { .. }
                )
        )
    }
}

/// A running relay, started in-process (the demo and the tests use this).
pub struct Relay {
    /// The address the desk API listens on.
    pub addr: SocketAddr,
    /// The address `GET /metrics` is served on without the bearer key (`metrics.listen`).
    pub metrics_addr: Option<SocketAddr>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Relay {
    /// Opens the outbox, resumes pending work, and starts serving the desk API.
    pub async fn start(config: &Config) -> Result<Relay, ServeError> {
        let api_key = config.api_key()?.clone();
        let (store, pending) = open_store(config).await?;
        if !pending.is_empty() {
            tracing::info!(jobs = pending.len(), "resuming stored jobs");
        }
        let dialogue = Arc::new(dialogue_provider(config)?);
        let mut providers = Providers::new();
        providers.register(
            DIALOGUE_ACCOUNT,
            Arc::clone(&dialogue) as Arc<dyn kefu_core::Provider>,
        );
        let wechat = wechat_providers(config, &store)?;
        for provider in &wechat {
            let name = provider.name().to_owned();
            providers.register(name, Arc::clone(provider) as Arc<dyn kefu_core::Provider>);
        }
        register_vendor_providers(config, &mut providers)?;
        let providers = Arc::new(providers);
        let policy = retry_policy(config);
        let metrics = Arc::new(Metrics::default());
        metrics.wechat_accounts(wechat.clone());
        let wechat = Arc::new(
            wechat
                .into_iter()
                .map(|p| (p.name().to_owned(), p))
                .collect(),
        );
        let dispatcher = Dispatcher::start(
            Arc::clone(&store),
            Arc::clone(&providers),
            policy,
            config.delivery.concurrency,
            Arc::clone(&metrics),
            pending,
        );
        let inbound = Inbound::start(Arc::clone(&store), config, Arc::clone(&metrics)).await?;
        let metrics_app = api::metrics_router(Arc::clone(&metrics));
        let state = ApiState {
            store: Arc::clone(&store),
            dispatcher: dispatcher.clone(),
            metrics,
            api_key,
            providers,
            dialogue,
            store_backend: config.store.backend(),
            inbound: inbound.clone(),
            idempotency_retention: config.idempotency_retention,
            wechat,
        };
        let app = api::router(state, config.max_body_bytes, config.console.as_ref());
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
        let (metrics_addr, metrics_task) = match config.metrics_listen {
            Some(at) => {
                match serve_metrics(at, config.server_limits, metrics_app, inbound.clone()).await {
                    Ok((addr, task)) => (Some(addr), Some(task)),
                    Err(error) => {
                        inbound.shutdown(Duration::ZERO).await;
                        return Err(error);
                    }
                }
            }
            None => (None, None),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let limits = config.server_limits;
        let task = tokio::spawn(async move {
            let stopping = inbound.clone();
            let shutdown = async move {
                let _ = stopped.await;
                // Long polls answer now rather than hold the graceful stop up.
                stopping.begin_shutdown();
            };
            serve_router(listener, limits, app, shutdown).await;
            if let Some(metrics_task) = metrics_task {
                let _ = metrics_task.await;
            }
            tokio::join!(
                dispatcher.shutdown(SHUTDOWN_GRACE),
                inbound.shutdown(SHUTDOWN_GRACE)
            );
            // The deliveries have stopped: on a shared store, the others take this relay's
            // conversations at once rather than after its lease runs out.
            if store.shared() {
                if let Err(error) = store.stop().await {
                    tracing::warn!(
                        "this relay's conversations were not let go at stop (the others take them when its lease runs out): {error}"
                    );
                }
            }
            // Last: the outbox file alone then holds everything, for a copy or a restore.
            if let Err(error) = store.checkpoint().await {
                tracing::warn!(
                    "the outbox was not checkpointed at stop (its WAL still holds recent rows, which is safe): {error}"
                );
            }
        });
        tracing::info!(%addr, "desk API listening");
        Ok(Relay {
            addr,
            metrics_addr,
            stop,
            task,
        })
    }

    /// Stops accepting requests, lets requests in flight finish, and waits for the deliveries
    /// under way (up to a grace period). Undelivered jobs stay stored for the next start.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Opens the store the configuration names, with the jobs it still has to deliver.
async fn open_store(config: &Config) -> Result<(Arc<dyn Store>, Vec<PendingJob>), ServeError> {
    if let Some(pg) = config.store.postgres() {
        // Shared with the other relays of the database: the claim loop finds the work.
        let opened = crate::postgres::open(pg).await?;
        return Ok((Arc::new(opened.store), Vec::new()));
    }
    // SQLite's own error for this is "unable to open database file", which names neither the
    // directory nor the setting.
    if let Some(dir) = config
        .outbox_path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty() && !dir.is_dir())
    {
        return Err(ServeError::OutboxDirectory {
            dir: dir.display().to_string(),
        });
    }
    let (sqlite, pending) = SqliteStore::open(&config.outbox_path)?;
    Ok((Arc::new(sqlite), pending))
}

/// Serves `app` on `listener` with the slow-client timeouts and the connection limit, until
/// `shutdown`, then lets requests in flight finish within [`SHUTDOWN_GRACE`].
async fn serve_router(
    listener: TcpListener,
    limits: ServerLimits,
    app: axum::Router,
    shutdown: impl Future<Output = ()>,
) {
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
}

/// Serves `GET /metrics` without the bearer key at `at` until `inbound` begins to stop.
async fn serve_metrics(
    at: SocketAddr,
    limits: ServerLimits,
    app: axum::Router,
    inbound: Inbound,
) -> Result<(SocketAddr, JoinHandle<()>), ServeError> {
    let bind = |source| ServeError::Bind { addr: at, source };
    let listener = TcpListener::bind(at).await.map_err(bind)?;
    let addr = listener.local_addr().map_err(bind)?;
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "metrics.listen is not a loopback address: GET /metrics is served there without the bearer key; make sure only the scraper can reach it");
    }
    let task = tokio::spawn(serve_router(listener, limits, app, async move {
        inbound.stopping().await
    }));
    tracing::info!(%addr, "GET /metrics listening without the bearer key (metrics.listen)");
    Ok((addr, task))
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

/// The Dialogue platform's provider the configuration describes.
pub fn dialogue_provider(config: &Config) -> Result<DialogueProvider, kefu_client::Error> {
    let dialogue = &config.dialogue;
    Ok(DialogueProvider::new(
        platform_client(config)?,
        dialogue.appid.clone(),
        dialogue.token.expose(),
    ))
}

/// The `custom/send` providers of the `[wechat.<name>]` accounts that have an AppSecret, with
/// their access tokens kept in `store`.
pub fn wechat_providers(
    config: &Config,
    store: &Arc<dyn Store>,
) -> Result<Vec<Arc<WechatProvider>>, ServeError> {
    let mut providers = Vec::new();
    for account in &config.wechat {
        let Some(send) = &account.send else {
            continue;
        };
        let kind = match account.kind {
            AccountKind::OfficialAccount => CgiAccountKind::OfficialAccount,
            AccountKind::MiniProgram => CgiAccountKind::MiniProgram,
            // The configuration refuses a secret on a WeCom account.
            AccountKind::WeCom => continue,
        };
        let provider =
            WechatProvider::builder(&account.name, kind, &send.appid, send.secret.expose())
                .api_base_url(&send.api_base_url)
                .typing_path(&send.typing_path)
                .text_budget_bytes(send.text_budget_bytes)
                .token_fetch_timeout(config.tokens.fetch_timeout)
                .connect_timeout(config.dialogue.connect_timeout)
                .request_timeout(config.dialogue.request_timeout)
                .token_store(Arc::clone(store).tokens())
                .build()
                .map_err(|error| ServeError::Account {
                    account: account.name.clone(),
                    reason: error.to_string(),
                })?;
        providers.push(Arc::new(provider));
    }
    Ok(providers)
}

/// Registers the providers of the `[yunzhenji.<name>]` and `[gateway.<name>]` accounts under
/// their names, with the platform's timeouts.
pub fn register_vendor_providers(
    config: &Config,
    providers: &mut Providers,
) -> Result<(), ServeError> {
    let refused = |account: &str| {
        let account = account.to_owned();
        move |error: kefu_client::SettingsError| ServeError::Account {
            account,
            reason: error.to_string(),
        }
    };
    let timeouts = &config.dialogue;
    for account in &config.yunzhenji {
        let provider = YunzhenjiProvider::builder(
            &account.name,
            &account.app_id,
            account.access_token.expose(),
            &account.wxid,
        )
        .base_url(&account.base_url)
        .confirm_window(account.confirm_window)
        .connect_timeout(timeouts.connect_timeout)
        .request_timeout(timeouts.request_timeout)
        .build()
        .map_err(refused(&account.name))?;
        providers.register(account.name.clone(), Arc::new(provider));
    }
    for account in &config.gateway {
        let provider = GatewayProvider::builder(&account.name)
            .base_url(&account.base_url)
            .system(&account.system)
            .connect_timeout(timeouts.connect_timeout)
            .request_timeout(timeouts.request_timeout)
            .build()
            .map_err(refused(&account.name))?;
        providers.register(account.name.clone(), Arc::new(provider));
    }
    Ok(())
}

/// The retry policy the configuration describes.
pub fn retry_policy(config: &Config) -> RetryPolicy {
    RetryPolicy::default()
        .with_initial_backoff(config.delivery.initial_backoff)
        .with_max_attempts(config.delivery.max_attempts)
        .with_max_elapsed(config.delivery.max_elapsed)
}

/// Runs `serve` until SIGTERM or SIGINT.
pub fn run(args: ServeArgs) -> ExitCode {
    let config = match Config::load_cli(args.config.as_deref(), true) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    crate::runtime::init_logging(config.log_format == LogFormat::Json);
    let file = crate::config::config_file(args.config.as_deref());
    tracing::info!(
        "{}",
        crate::config::settings_origin(args.config.as_deref(), file.as_deref())
    );
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
                // Once, on stderr, where the log lines go too: not also as a log line.
                eprintln!("error: {error}");
                return if error.is_config() {
                    ExitCode::from(2)
                } else {
                    ExitCode::FAILURE
                };
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
