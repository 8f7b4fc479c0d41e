//! How to run a sandbox, and the validation of its settings into the running pieces, with
//! messages that never show a secret.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use wxbizmsgcrypt::MsgCrypt;

use crate::cgibin::ApiSettings;
use crate::gateway::GatewaySettings;
use crate::oa::{OaAccount, OfficialAccount};
use crate::push::{Target, parse_callback_url};
use crate::yunzhenji::YunzhenjiSettings;

/// How many accepted messages a sandbox keeps by default; the oldest go first.
pub const DEFAULT_MAX_MESSAGES: usize = 100_000;

/// How to run a sandbox. Build one with [`SandboxConfig::new`] and set the public fields.
///
/// `Debug` shows the TOKEN and the EncodingAESKey as `<redacted>`.
#[derive(Clone)]
pub struct SandboxConfig {
    /// Where to listen; port 0 picks a free port ([`Sandbox::addr`](crate::Sandbox::addr) tells which).
    pub listen: SocketAddr,
    /// The TOKEN that the URLs must carry.
    pub token: String,
    /// The 43-character EncodingAESKey.
    pub aes_key: String,
    /// The bot APPID: the receive-id of every ciphertext, both ways.
    pub appid: String,
    /// Where handoff callbacks go (`http://` only), or nowhere.
    pub callback_url: Option<String>,
    /// The delay before answering each platform request.
    pub latency: Duration,
    /// The fraction of platform requests answered with the `-1` system error, 0.0..=1.0.
    pub system_error_rate: f64,
    /// The fraction of platform requests dropped without an answer, 0.0..=1.0.
    pub drop_rate: f64,
    /// The RNG seed of the faults (and `rid`s); `None` picks one at random, which
    /// [`Sandbox::seed`](crate::Sandbox::seed) reports so that a run can be repeated.
    pub seed: Option<u64>,
    /// How many accepted messages to keep (the oldest go first); 0 keeps none.
    pub max_messages: usize,
    /// The Official Account whose message pushes the sandbox emulates, if any. A push opens
    /// the send window of the [`ApiAccount`](crate::ApiAccount) with the same AppID, if there is one.
    pub oa: Option<OaAccount>,
    /// The accounts of `api.weixin.qq.com` and the clocks of its rules.
    pub api: ApiSettings,
    /// yunzhenji's accounts and pushes (one default account).
    pub yunzhenji: YunzhenjiSettings,
    /// The company gateway: its `system` header and the account it sends through.
    pub gateway: GatewaySettings,
    /// Timeouts for slow clients and the connection limit, as `serve`'s defaults unless changed.
    pub limits: kefu_http_server::ServerLimits,
}

impl SandboxConfig {
    /// A sandbox for one bot on `127.0.0.1:0`, with no callback URL and no faults.
    pub fn new(
        token: impl Into<String>,
        aes_key: impl Into<String>,
        appid: impl Into<String>,
    ) -> SandboxConfig {
        SandboxConfig {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            token: token.into(),
            aes_key: aes_key.into(),
            appid: appid.into(),
            callback_url: None,
            latency: Duration::ZERO,
            system_error_rate: 0.0,
            drop_rate: 0.0,
            seed: None,
            max_messages: DEFAULT_MAX_MESSAGES,
            oa: None,
            api: ApiSettings::default(),
            yunzhenji: YunzhenjiSettings::default(),
            gateway: GatewaySettings::default(),
            limits: kefu_http_server::ServerLimits::default(),
        }
    }
}

impl fmt::Debug for SandboxConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxConfig")
            .field("listen", &self.listen)
            .field("token", &"<redacted>")
            .field("aes_key", &"<redacted>")
            .field("appid", &self.appid)
            .field(
                "callback_url",
                &self.callback_url.as_ref().map(|_| "<redacted>"),
            )
            .field("latency", &self.latency)
            .field("system_error_rate", &self.system_error_rate)
            .field("drop_rate", &self.drop_rate)
            .field("seed", &self.seed)
            .field("max_messages", &self.max_messages)
            .field("oa", &self.oa)
            .field("api", &self.api)
            .field("yunzhenji", &self.yunzhenji)
            .field("gateway", &self.gateway)
            .field("limits", &self.limits)
            .finish()
    }
}

/// Why a sandbox could not start. Messages never contain the TOKEN, the key or the callback URL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// A setting is invalid.
    #[error("invalid {setting}: {reason}")]
    Config {
        /// The setting, as the command line names it (`--aes-key`, …).
        setting: &'static str,
        /// What is wrong with it.
        reason: String,
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

impl SandboxError {
    pub(crate) fn config(setting: &'static str, reason: impl Into<String>) -> SandboxError {
        SandboxError::Config {
            setting,
            reason: reason.into(),
        }
    }

    /// `true` for an invalid setting (as opposed to a failure to listen).
    pub fn is_config(&self) -> bool {
        matches!(self, SandboxError::Config { .. })
    }
}

/// Checks the TOKEN as kefu-client does: it is a URL path segment, so only unreserved
/// characters.
pub(crate) fn check_token(token: &str) -> Result<(), SandboxError> {
    if token.is_empty() {
        return Err(SandboxError::config(
            "--token",
            "the TOKEN must not be empty",
        ));
    }
    match token
        .chars()
        .position(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~')))
    {
        Some(position) => Err(SandboxError::config(
            "--token",
            format!(
                "the TOKEN has a character at position {position} that is not allowed in a URL path (A-Z, a-z, 0-9, '-', '.', '_', '~')"
            ),
        )),
        None => Ok(()),
    }
}

/// Builds the bot's crypt, with messages that never show a character of the key.
pub(crate) fn crypt(config: &SandboxConfig) -> Result<MsgCrypt, SandboxError> {
    if config.appid.is_empty() {
        return Err(SandboxError::config(
            "--bot-appid",
            "the bot APPID (the receive-id) must not be empty",
        ));
    }
    MsgCrypt::new(
        config.token.as_str(),
        &config.aes_key,
        config.appid.as_bytes(),
    )
    .map_err(|error| SandboxError::config("--aes-key", key_error(error)))
}

/// Why an EncodingAESKey is refused, without a character of it.
fn key_error(error: wxbizmsgcrypt::Error) -> String {
    match error {
        wxbizmsgcrypt::Error::AesKeyLength { len } => {
            format!("the EncodingAESKey must be exactly 43 characters, got {len}")
        }
        wxbizmsgcrypt::Error::AesKeyCharacter { position, .. } => format!(
            "the EncodingAESKey has a character at position {position} that is not base64 (A-Z, a-z, 0-9, +, /)"
        ),
        other => format!("the EncodingAESKey is unusable ({})", other.error_code()),
    }
}

/// Validates the Official Account settings and builds the running account.
pub(crate) fn official_account(account: &OaAccount) -> Result<OfficialAccount, SandboxError> {
    if account.token.is_empty() {
        return Err(SandboxError::config(
            "--oa-token",
            "the Official Account's Token must not be empty",
        ));
    }
    if account.appid.is_empty() {
        return Err(SandboxError::config(
            "--oa-appid",
            "the Official Account's AppID (the receive-id) must not be empty",
        ));
    }
    if account.original_id.is_empty() || !account.original_id.chars().all(kefu_payload::is_xml_char)
    {
        return Err(SandboxError::config(
            "--oa-original-id",
            "the Official Account's original ID (ToUserName, gh_…) must not be empty or hold characters XML cannot carry",
        ));
    }
    let crypt = MsgCrypt::new(
        account.token.as_str(),
        &account.aes_key,
        account.appid.as_bytes(),
    )
    .map_err(|error| SandboxError::config("--oa-aes-key", key_error(error)))?;
    let target = account
        .callback_url
        .as_deref()
        .map(parse_callback_url)
        .transpose()
        .map_err(|reason| SandboxError::config("--oa-callback-url", reason))?;
    Ok(OfficialAccount::new(account, crypt, Target::new(target)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

    fn config() -> SandboxConfig {
        SandboxConfig::new("SecretTokenValue", KEY, "Gg8HejYTkUsEIlG")
    }

    #[test]
    fn debug_redacts_secrets() {
        let mut c = config();
        c.callback_url = Some("http://127.0.0.1:1/cb/hidden".into());
        let text = format!("{c:?}");
        assert!(
            !text.contains("SecretTokenValue") && !text.contains(KEY) && !text.contains("hidden")
        );
        assert!(text.contains("Gg8HejYTkUsEIlG"));
    }
}
