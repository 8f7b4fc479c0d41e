//! `kefu-connector token refresh --account NAME --force`: the operator's forced access-token
//! refresh for a leaked token (protocols.md §6.4), and `POST /v1/tokens/{account}/refresh`, the
//! relay route it goes through while `serve` runs.
//!
//! The outbox file is locked by the relay that owns it (`<path>.lock`), so a second process
//! cannot save a token into it while `serve` runs. The command therefore asks the running relay
//! (at `server.listen`, with `server.api_key`): the relay forces the refresh with its own token
//! manager, which keeps the new token in memory and in the store at once, so its next call
//! already uses it. Only when no relay answers does the command open the store itself, where the
//! next `serve` finds the token at start.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use clap::{Args, Subcommand};
use kefu_client::wechat::{FORCE_REFRESH_HELP, TokenError, WechatProvider};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::api::ApiState;
use crate::config::Config;
use crate::desk::Desk;
use crate::runtime::block_on;
use crate::serve::wechat_providers;
use crate::store::Store;
use crate::store::sqlite::SqliteStore;

/// `token …`: access tokens of the `[wechat.<name>]` accounts.
#[derive(Debug, Subcommand)]
pub enum TokenArgs {
    /// Force a new access token for an account (only for a leaked token).
    #[command(long_about = REFRESH_LONG_HELP)]
    Refresh(RefreshArgs),
}

/// The long help of `token refresh`.
const REFRESH_LONG_HELP: &str = concat!(
    "Forces a new access token with stable_token force_refresh=true, invalidating the current one at once for every replica. Only for a leaked token: the platform allows 20 forced refreshes a day, at least 30 s apart (otherwise it does not refresh).\n\n",
    "While serve runs, the command asks it (POST /v1/tokens/{account}/refresh on server.listen, with server.api_key): the relay forces the refresh itself and uses the new token from its next call on. ",
    "When no relay answers, the command saves the new token in the outbox (outbox.path), where the next serve finds it. ",
    "Any other process still holding the old token gets 40001 once, drops that token, fetches the current one and replays the call."
);

/// Arguments of `token refresh`.
#[derive(Debug, Args)]
pub struct RefreshArgs {
    /// The TOML configuration file (the one `serve` reads) [default: ./kefu.toml if it exists].
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// The `[wechat.<name>]` account, which must have a `secret`.
    #[arg(long)]
    pub account: String,
    /// Really force the refresh: the platform allows 20 a day, at least 30 s apart.
    #[arg(long)]
    pub force: bool,
}

/// What a forced refresh came to, as the route answers it and the command prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refreshed {
    /// The account's name.
    pub account: String,
    /// Whether the platform handed out a new token; `false` when it ignored the refresh (more
    /// than 20 a day, or less than 30 s after the last).
    pub changed: bool,
    /// The token's remaining lifetime in seconds.
    pub expires_in: u64,
}

/// Why a forced refresh did not happen. Its message is free of secrets.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// No `[wechat.<name>]` account of that name has a `secret`.
    #[error(
        "no [wechat.{0}] account with a secret is configured; only those accounts have access tokens"
    )]
    UnknownAccount(String),
    /// The platform refused or could not be reached.
    #[error("stable_token failed: {0}")]
    Platform(#[from] TokenError),
}

/// Forces a new token for `provider`, telling whether the platform changed it.
pub async fn force_refresh(provider: &WechatProvider) -> Result<Refreshed, RefreshError> {
    let tokens = provider.tokens();
    // The token in use before, to tell a refresh the platform ignored (its limits) from one
    // that took effect; it stays in memory and never leaves this function.
    let before = tokens.token().await?;
    let expires_in = tokens.force_refresh().await?;
    let after = tokens.token().await?;
    Ok(Refreshed {
        account: provider.name().to_owned(),
        changed: after != before,
        expires_in,
    })
}

/// The providers by account name, for the route.
pub type WechatAccounts = BTreeMap<String, Arc<WechatProvider>>;

/// `POST /v1/tokens/{account}/refresh` with `{"force": true}`.
pub(crate) async fn refresh_route(
    State(state): State<Arc<ApiState>>,
    Path(account): Path<String>,
    body: Option<Json<serde_json::Value>>,
) -> Response {
    let forced = body.is_some_and(|Json(body)| body.get("force") == Some(&json!(true)));
    if !forced {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": format!("send {{\"force\": true}}: {FORCE_REFRESH_HELP}")})),
        )
            .into_response();
    }
    let Some(provider) = state.wechat.get(&account) else {
        let error = RefreshError::UnknownAccount(account);
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": error.to_string()})),
        )
            .into_response();
    };
    match force_refresh(provider).await {
        Ok(refreshed) => Json(refreshed).into_response(),
        Err(error) => {
            tracing::warn!(
                account = provider.name(),
                "forced token refresh failed: {error}"
            );
            (
                StatusCode::BAD_GATEWAY,
                Json(json!({"error": error.to_string()})),
            )
                .into_response()
        }
    }
}

/// Where a client reaches `listen`: a wildcard address is reached on loopback.
fn reachable(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), listen.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), listen.port())
        }
        _ => listen,
    }
}

/// Refreshes through the running relay; `None` if no relay answers there.
async fn through_relay(config: &Config, account: &str) -> Option<Result<Refreshed, String>> {
    let api_key = config.api_key().ok()?;
    let desk = Desk::new(
        format!("http://{}", reachable(config.listen)),
        api_key.expose(),
    );
    let path = format!("/v1/tokens/{account}/refresh");
    let reply = desk.post(&path, &json!({"force": true})).await.ok()?;
    if reply.status.is_success() {
        Some(serde_json::from_value(reply.body).map_err(|e| format!("the relay's answer: {e}")))
    } else {
        let error = reply.body["error"]
            .as_str()
            .unwrap_or(&reply.text)
            .to_owned();
        Some(Err(format!(
            "the relay at {} answered {}: {error}",
            config.listen, reply.status
        )))
    }
}

/// Refreshes with the store opened here, when no relay holds it.
async fn through_store(config: &Config, account: &str) -> Result<Refreshed, String> {
    let (sqlite, _pending) = SqliteStore::open(&config.outbox_path).map_err(|e| {
        format!(
            "no relay answered at {} and the outbox cannot be opened: {e}",
            config.listen
        )
    })?;
    let store: Arc<dyn Store> = Arc::new(sqlite);
    let providers = wechat_providers(config, &store).map_err(|e| e.to_string())?;
    let provider = providers
        .iter()
        .find(|p| p.name() == account)
        .ok_or_else(|| RefreshError::UnknownAccount(account.to_owned()).to_string())?;
    force_refresh(provider).await.map_err(|e| e.to_string())
}

/// Runs `token …`.
pub fn run(args: TokenArgs) -> ExitCode {
    let TokenArgs::Refresh(args) = args;
    if !args.force {
        eprintln!(
            "error: refusing without --force. {FORCE_REFRESH_HELP} Pass --force to refresh the token of [wechat.{}].",
            args.account
        );
        return ExitCode::from(2);
    }
    let config = match Config::load_cli(args.config.as_deref(), false) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    if !config
        .wechat
        .iter()
        .any(|a| a.name == args.account && a.send.is_some())
    {
        eprintln!("error: {}", RefreshError::UnknownAccount(args.account));
        return ExitCode::from(2);
    }
    block_on(async {
        let outcome = match through_relay(&config, &args.account).await {
            Some(outcome) => outcome.map(|r| (r, "the running relay uses it from its next call")),
            None => through_store(&config, &args.account)
                .await
                .map(|r| (r, "saved in the outbox for the next serve")),
        };
        report(outcome)
    })
}

/// Prints what the refresh came to; the exit status.
fn report(outcome: Result<(Refreshed, &str), String>) -> ExitCode {
    match outcome {
        Ok((refreshed, _)) if !refreshed.changed => {
            println!(
                "account {}: the platform ignored the refresh and the token is unchanged (it allows 20 forced refreshes a day, at least 30 s apart); it expires in {} s",
                refreshed.account, refreshed.expires_in
            );
            ExitCode::FAILURE
        }
        Ok((refreshed, where_)) => {
            println!(
                "account {}: new access token, expires in {} s; {where_}",
                refreshed.account, refreshed.expires_in
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
