//! A company gateway's `sendCustomerMessage` (协作系统-发送客服消息, protocols.md §8):
//! [`GatewayProvider`] implements [`kefu_core::Provider`] for one `[gateway.<name>]` account.
//! It takes text only, and answers `code: 200` even when WeChat refused the message, so its
//! answers are classified on `data.errcode` too
//! ([`kefu_payload::gateway::classify`]).
//!
//! ```no_run
//! use kefu_client::gateway::{GatewayEnvironment, GatewayProvider};
//!
//! # fn demo() -> Result<(), kefu_client::SettingsError> {
//! let provider = GatewayProvider::builder("members")
//!     .environment(GatewayEnvironment::Uat)
//!     .build()?;
//! # Ok(()) }
//! ```

use core::fmt;

use hyper::header::{HeaderName, HeaderValue};
use kefu_core::{
    Attempt, BoxFuture, Class, ComposeRequest, Composed, Invalid, Job, Provider, Reason,
};
use kefu_payload::gateway::{classify, read_desk_message};

use crate::post::{Endpoint, PostSettings, Posted, Poster};
use crate::settings::SettingsError;

/// The send path.
pub const SEND_PATH: &str = "/wisdom-api/weixin/v1/sendCustomerMessage";

/// The operation of a stored message job.
pub const OPERATION_SEND: &str = "sendCustomerMessage";

pub use kefu_payload::gateway::DEFAULT_SYSTEM;

/// The gateway's three documented hosts (protocols.md §8.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GatewayEnvironment {
    /// `https://guide-api-test.feihe.com`
    Test,
    /// `https://guide-api-uat.feihe.com`
    Uat,
    /// `https://guide-api.feihe.com`
    Prod,
}

impl GatewayEnvironment {
    /// The environment's base URL.
    pub const fn base_url(self) -> &'static str {
        match self {
            GatewayEnvironment::Test => "https://guide-api-test.feihe.com",
            GatewayEnvironment::Uat => "https://guide-api-uat.feihe.com",
            GatewayEnvironment::Prod => "https://guide-api.feihe.com",
        }
    }

    /// Reads `test`, `uat` or `prod` (any case).
    pub fn parse(name: &str) -> Option<GatewayEnvironment> {
        [
            GatewayEnvironment::Test,
            GatewayEnvironment::Uat,
            GatewayEnvironment::Prod,
        ]
        .into_iter()
        .find(|env| env.as_str().eq_ignore_ascii_case(name.trim()))
    }

    /// `test`, `uat` or `prod`.
    pub const fn as_str(self) -> &'static str {
        match self {
            GatewayEnvironment::Test => "test",
            GatewayEnvironment::Uat => "uat",
            GatewayEnvironment::Prod => "prod",
        }
    }
}

/// Configures a [`GatewayProvider`]; made by [`GatewayProvider::builder`].
#[derive(Debug, Clone)]
pub struct GatewayProviderBuilder {
    name: String,
    base_url: Option<String>,
    system: String,
    post: PostSettings,
}

impl GatewayProviderBuilder {
    /// The gateway's host, such as a sandbox's `http://127.0.0.1:<port>`. Required unless
    /// [`environment`](Self::environment) picks a documented one; the later call wins.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    /// One of the three documented hosts.
    pub fn environment(mut self, environment: GatewayEnvironment) -> Self {
        self.base_url = Some(environment.base_url().to_owned());
        self
    }

    /// The `system:` header. Default [`DEFAULT_SYSTEM`].
    pub fn system(mut self, system: impl Into<String>) -> Self {
        self.system = system.into();
        self
    }

    crate::post::post_setters!();

    /// Checks the settings and builds the provider. No connection is made here.
    pub fn build(self) -> Result<GatewayProvider, SettingsError> {
        if self.name.trim().is_empty() {
            return Err(SettingsError::Empty { field: "name" });
        }
        let Some(base_url) = self.base_url else {
            return Err(SettingsError::Empty { field: "base_url" });
        };
        if self.system.trim().is_empty() {
            return Err(SettingsError::Empty { field: "system" });
        }
        let system = HeaderValue::from_str(&self.system)
            .map_err(|_| SettingsError::Invalid { field: "system" })?;
        let endpoint = Endpoint::new(&base_url, SEND_PATH)?;
        let poster = self.post.build()?;
        Ok(GatewayProvider {
            name: self.name,
            endpoint,
            system,
            poster,
        })
    }
}

/// One company-gateway account (protocols.md §8):
///
/// * [`compose`](Provider::compose) reads the desk's `{"openid","msg"}`, `msg` a string
///   (the gateway documents text only), into one `{"openId","msg"}` job;
/// * [`send`](Provider::send) posts it with the `system` header and classifies the answer:
///   success only for HTTP 2xx, `code` 200 and `data.errcode` 0; WeChat's codes by the OA
///   table; the gateway's own token codes as a replay once, then `config`; another `code`
///   terminal; a 5xx, a timeout after writing or an unreadable answer ambiguous.
pub struct GatewayProvider {
    name: String,
    endpoint: Endpoint,
    system: HeaderValue,
    poster: Poster,
}

impl fmt::Debug for GatewayProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayProvider")
            .field("name", &self.name)
            .field("url", &self.endpoint.shown)
            .field("system", &self.system)
            .finish_non_exhaustive()
    }
}

impl GatewayProvider {
    /// Starts configuring the account `name` (its `[gateway.<name>]` name).
    pub fn builder(name: impl Into<String>) -> GatewayProviderBuilder {
        GatewayProviderBuilder {
            name: name.into(),
            base_url: None,
            system: DEFAULT_SYSTEM.to_owned(),
            post: PostSettings::default(),
        }
    }

    /// The account's configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    async fn attempt(&self, job: &Job) -> Attempt {
        if job.operation != OPERATION_SEND {
            return Attempt::new(
                Class::Terminal(Reason::Unknown),
                None,
                format!(
                    "{:?} is not an operation of a gateway account ({OPERATION_SEND}); not sent",
                    job.operation
                ),
            );
        }
        let started = tokio::time::Instant::now();
        let system = Some((HeaderName::from_static("system"), self.system.clone()));
        let posted = self
            .poster
            .post(&self.endpoint, system, job.payload.clone())
            .await;
        let shown = &self.endpoint.shown;
        let attempt = match posted {
            Posted::Answer { status, body } => {
                let attempt = classify(status, &body);
                Attempt {
                    message: format!("{OPERATION_SEND}: {}", attempt.message),
                    ..attempt
                }
            }
            Posted::NotSent(why) => Attempt::new(
                Class::Transient,
                None,
                format!("{OPERATION_SEND} ({shown}): {why}; not sent"),
            ),
            Posted::MaybeSent(why) => Attempt::new(
                Class::Ambiguous,
                None,
                format!(
                    "{OPERATION_SEND} ({shown}): {why}; the message may have been delivered, so it is not resent"
                ),
            ),
        };
        tracing::debug!(
            account = %self.name,
            operation = OPERATION_SEND,
            job = job.id,
            class = ?attempt.class,
            errcode = attempt.code,
            rid = attempt.rid.as_deref(),
            request_bytes = job.payload.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "gateway call: {}",
            attempt.message
        );
        attempt
    }
}

impl Provider for GatewayProvider {
    fn kind(&self) -> &'static str {
        "gateway"
    }

    fn compose(&self, request: ComposeRequest<'_>) -> Result<Vec<Composed>, Invalid> {
        let read = read_desk_message(request.body)?;
        Ok(vec![Composed {
            recipient: read.openid,
            operation: OPERATION_SEND.to_owned(),
            payload: read.payload,
        }])
    }

    fn send<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Attempt> {
        Box::pin(self.attempt(job))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn settings() {
        let err = GatewayProvider::builder("g").build().unwrap_err();
        assert_eq!(err, SettingsError::Empty { field: "base_url" });
        let err = GatewayProvider::builder("")
            .environment(GatewayEnvironment::Prod)
            .build()
            .unwrap_err();
        assert_eq!(err, SettingsError::Empty { field: "name" });
        let err = GatewayProvider::builder("g")
            .environment(GatewayEnvironment::Prod)
            .system("A\nB")
            .build()
            .unwrap_err();
        assert_eq!(err, SettingsError::Invalid { field: "system" });
        for (env, url) in [
            (GatewayEnvironment::Test, "https://guide-api-test.feihe.com"),
            (GatewayEnvironment::Uat, "https://guide-api-uat.feihe.com"),
            (GatewayEnvironment::Prod, "https://guide-api.feihe.com"),
        ] {
            assert_eq!(
                GatewayEnvironment::parse(&env.as_str().to_uppercase()),
                Some(env)
            );
            let provider = GatewayProvider::builder("g")
                .environment(env)
                .build()
                .unwrap();
            assert_eq!(provider.endpoint.shown, format!("{url}{SEND_PATH}"));
            assert_eq!(provider.kind(), "gateway");
            assert_eq!(provider.system, DEFAULT_SYSTEM);
        }
        assert_eq!(GatewayEnvironment::parse("staging"), None);
        let err = GatewayProvider::builder("g")
            .environment(GatewayEnvironment::Test)
            .request_timeout(std::time::Duration::ZERO)
            .build()
            .unwrap_err();
        assert_eq!(
            err,
            SettingsError::Zero {
                which: "request timeout"
            }
        );
    }
}
