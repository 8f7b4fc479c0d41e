//! A relay's settings on a sandbox, the two started together, and waiting for a message's
//! status, for the end-to-end tests of one provider each.

use std::path::Path;
use std::time::Duration;

use kefu_connector::config::Config;
use kefu_connector::desk::Desk;
use kefu_connector::sandbox::{Sandbox, SandboxConfig};
use kefu_connector::serve::Relay;
use serde_json::Value;

/// The Dialogue settings of [`sandbox_config`].
pub const TOKEN: &str = "RELAYTESTTOKEN0123";
pub const AES_KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
pub const BOT_APPID: &str = "Gg8HejYTkUsEIlG";

/// A sandbox without faults, whose Dialogue bot is the relay's of [`settings`].
pub fn sandbox_config() -> SandboxConfig {
    SandboxConfig::new(TOKEN, AES_KEY, BOT_APPID)
}

/// The settings every relay of these tests needs, by environment variable: loopback, the desk's
/// key, the sandbox's Dialogue bot, the outbox, quick retries. The test adds its accounts.
pub fn settings(sandbox: &Sandbox, outbox: &Path, api_key: &str) -> Vec<(&'static str, String)> {
    vec![
        ("KEFU_SERVER_LISTEN", "127.0.0.1:0".into()),
        ("KEFU_SERVER_API_KEY", api_key.into()),
        ("KEFU_DIALOGUE_TOKEN", TOKEN.into()),
        ("KEFU_DIALOGUE_AES_KEY", AES_KEY.into()),
        ("KEFU_DIALOGUE_BOT_APPID", BOT_APPID.into()),
        ("KEFU_DIALOGUE_BASE_URL", sandbox.base_url()),
        ("KEFU_OUTBOX_PATH", outbox.display().to_string()),
        ("KEFU_DELIVERY_INITIAL_BACKOFF_MS", "5".into()),
    ]
}

/// A sandbox, a relay on it, and the desk's client of that relay.
pub struct Setup {
    pub sandbox: Sandbox,
    pub relay: Relay,
    pub desk: Desk,
}

impl Setup {
    /// Starts a relay with `settings` next to `sandbox`; the desk authenticates with `api_key`.
    pub async fn start(sandbox: Sandbox, settings: &[(&str, String)], api_key: &str) -> Setup {
        let config = Config::from_settings(settings).expect("the relay's settings");
        let relay = Relay::start(&config).await.expect("the relay starts");
        let desk = Desk::new(format!("http://{}", relay.addr), api_key);
        Setup {
            sandbox,
            relay,
            desk,
        }
    }

    /// Stops the relay, then the sandbox.
    pub async fn stop(self) {
        self.relay.stop().await;
        self.sandbox.stop().await;
    }
}

/// Message `id`'s status once it is one of `states` (bounded by a deadline, not a timed
/// assertion).
pub async fn status_in(desk: &Desk, id: i64, states: &[&str]) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = desk.get(&format!("/v1/messages/{id}")).await.unwrap().body;
        if states.contains(&status["status"].as_str().unwrap_or_default()) {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "message {id} never {states:?}: {status}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
