//! A sandbox and a relay wired together on loopback, with the outbox in a temporary directory:
//! what the demo, the load benchmark and the end-to-end tests run.

use crate::config::Config;
use crate::desk::Desk;
use crate::sandbox::{
    DEFAULT_YZJ_ACCESS_TOKEN, DEFAULT_YZJ_APP_ID, DEFAULT_YZJ_WXID, Sandbox, SandboxConfig,
    YunzhenjiChange,
};
use crate::serve::Relay;

/// The desk's bearer key of a loopback relay.
pub const API_KEY: &str = "loopback-desk-key-0123456789";
/// The secret path segment of the loopback relay's Dialogue callback URL.
pub const CALLBACK_SECRET: &str = "loopback-callback-secret-0123";
/// The Official Account AppID a loopback relay sends by default.
pub const OA_APPID: &str = "wx0000000000000000";
/// The relay's `[wechat.<name>]` account for the sandbox's Official Account, when it has one:
/// its callbacks arrive at `/v1/callbacks/wechat/shop`, and the desk sends with `"account":"shop"`.
pub const OA_ACCOUNT: &str = "shop";
/// The relay's `[yunzhenji.<name>]` account for the sandbox's default yunzhenji account: the desk
/// sends with `"account":"wecom_sales"` and a `target_wxid`.
pub const YUNZHENJI_ACCOUNT: &str = "wecom_sales";
/// The callback secret of [`YUNZHENJI_ACCOUNT`]: the sandbox pushes to
/// `/v1/callbacks/yunzhenji/<this>`.
pub const YUNZHENJI_CALLBACK_SECRET: &str = "loopback-yunzhenji-secret-0123456789";
/// The confirm window of [`YUNZHENJI_ACCOUNT`], in seconds: short, so that an accepted message
/// is delivered within a demo.
pub const YUNZHENJI_CONFIRM_WINDOW_SECS: u64 = 1;
/// The relay's `[gateway.<name>]` account for the sandbox's company gateway, which sends
/// through the sandbox's Official Account.
pub const GATEWAY_ACCOUNT: &str = "feihe";

/// A running sandbox, a relay delivering to it, and a desk client of the relay.
pub struct Loopback {
    /// The platform.
    pub sandbox: Sandbox,
    /// The relay.
    pub relay: Relay,
    /// A desk talking to the relay with [`API_KEY`].
    pub desk: Desk,
    /// The relay's configuration.
    pub config: Config,
    dir: tempfile::TempDir,
}

impl Loopback {
    /// Starts the sandbox, then a relay whose account matches it (token, key, bot APPID, base
    /// URL), listening on `127.0.0.1:0`, and points the sandbox's handoff callbacks at the relay.
    /// When the sandbox plays an Official Account ([`SandboxConfig::oa`]) whose AppID is one of
    /// its `api.weixin.qq.com` accounts, the relay also gets the account [`OA_ACCOUNT`] (the
    /// OA's Token, key and AppID, the AppSecret, the sandbox as `api_base_url`), and the OA's
    /// pushes go to its callback. The relay always gets the yunzhenji account
    /// [`YUNZHENJI_ACCOUNT`] (the sandbox's default one, whose pushes go to its callback) and the
    /// gateway account [`GATEWAY_ACCOUNT`].
    /// `overrides` are settings by environment-variable name, applied last, e.g.
    /// `("KEFU_DELIVERY_MAX_ATTEMPTS", "10")` or `("KEFU_WEBHOOK_URL", …)`.
    pub async fn start(
        sandbox: SandboxConfig,
        overrides: &[(&str, String)],
    ) -> Result<Loopback, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("cannot create a temp dir: {e}"))?;
        let mut settings: Vec<(&str, String)> = vec![
            ("KEFU_SERVER_LISTEN", "127.0.0.1:0".to_owned()),
            ("KEFU_SERVER_API_KEY", API_KEY.to_owned()),
            ("KEFU_DIALOGUE_TOKEN", sandbox.token.clone()),
            ("KEFU_DIALOGUE_AES_KEY", sandbox.aes_key.clone()),
            ("KEFU_DIALOGUE_BOT_APPID", sandbox.appid.clone()),
            ("KEFU_DIALOGUE_APPID", OA_APPID.to_owned()),
            ("KEFU_CALLBACKS_DIALOGUE_SECRET", CALLBACK_SECRET.to_owned()),
            (
                "KEFU_OUTBOX_PATH",
                dir.path().join("outbox.sqlite3").display().to_string(),
            ),
        ];
        let config_of_oa = sandbox.clone();
        let sandbox = Sandbox::start(sandbox)
            .await
            .map_err(|e| format!("cannot start the sandbox: {e}"))?;
        settings.push(("KEFU_DIALOGUE_BASE_URL", sandbox.base_url()));
        let oa = oa_settings(&config_of_oa, &sandbox.api_base_url());
        let with_oa = !oa.is_empty();
        settings.extend(oa);
        settings.extend(vendor_settings(&sandbox.url()));
        settings.extend(overrides.iter().cloned());
        let config = Config::from_settings(&settings).map_err(|e| e.to_string())?;
        let relay = Relay::start(&config).await.map_err(|e| e.to_string())?;
        let secret = config
            .callbacks
            .dialogue_secret
            .as_ref()
            .map(|s| s.expose().to_owned())
            .unwrap_or_default();
        sandbox
            .set_callback_url(&format!(
                "http://{}/v1/callbacks/dialogue/{secret}",
                relay.addr
            ))
            .map_err(|e| e.to_string())?;
        if with_oa {
            sandbox
                .set_oa_callback_url(&format!(
                    "http://{}/v1/callbacks/wechat/{OA_ACCOUNT}",
                    relay.addr
                ))
                .map_err(|e| e.to_string())?;
        }
        if let Some(account) = config.yunzhenji_account(YUNZHENJI_ACCOUNT) {
            sandbox
                .set_yunzhenji(&YunzhenjiChange {
                    callback_url: Some(format!(
                        "http://{}/v1/callbacks/yunzhenji/{}",
                        relay.addr,
                        account.callback_secret.expose()
                    )),
                    ..YunzhenjiChange::default()
                })
                .map_err(|e| e.to_string())?;
        }
        let desk = Desk::new(format!("http://{}", relay.addr), API_KEY);
        Ok(Loopback {
            sandbox,
            relay,
            desk,
            config,
            dir,
        })
    }

    /// Starts one more relay of the same configuration on `127.0.0.1:0`, named `relay_name` in
    /// the fleet, with a desk client of it: a peer on the same PostgreSQL database, delivering
    /// to the same sandbox. The sandbox's callbacks keep going to the first relay. Its caller
    /// stops it before [`Loopback::stop`].
    pub async fn start_peer(&self, relay_name: &str) -> Result<(Relay, Desk), String> {
        let mut config = self.config.clone();
        config.store = config.store.renamed(relay_name);
        let relay = Relay::start(&config).await.map_err(|e| e.to_string())?;
        let desk = Desk::new(format!("http://{}", relay.addr), API_KEY);
        Ok((relay, desk))
    }

    /// Where the outbox lives.
    pub fn outbox_path(&self) -> std::path::PathBuf {
        self.dir.path().join("outbox.sqlite3")
    }

    /// Stops the relay (letting deliveries in flight finish), then the sandbox.
    pub async fn stop(self) {
        self.relay.stop().await;
        self.sandbox.stop().await;
    }
}

/// The relay settings of [`OA_ACCOUNT`] for the sandbox's Official Account, or none when the
/// sandbox plays none or cannot send for it (no `api.weixin.qq.com` account with its AppID).
fn oa_settings(sandbox: &SandboxConfig, api_base_url: &str) -> Vec<(&'static str, String)> {
    let Some(oa) = &sandbox.oa else {
        return Vec::new();
    };
    let Some(api) = sandbox.api.accounts.iter().find(|a| a.appid == oa.appid) else {
        return Vec::new();
    };
    vec![
        ("KEFU_CALLBACKS_WECHAT_ACCOUNTS", OA_ACCOUNT.to_owned()),
        ("KEFU_WECHAT_SHOP_KIND", "oa".to_owned()),
        ("KEFU_WECHAT_SHOP_TOKEN", oa.token.clone()),
        ("KEFU_WECHAT_SHOP_AES_KEY", oa.aes_key.clone()),
        ("KEFU_WECHAT_SHOP_RECEIVE_ID", oa.appid.clone()),
        ("KEFU_WECHAT_SHOP_SECRET", api.secret.clone()),
        ("KEFU_WECHAT_SHOP_API_BASE_URL", api_base_url.to_owned()),
    ]
}

/// The relay settings of [`YUNZHENJI_ACCOUNT`] and [`GATEWAY_ACCOUNT`], both on the sandbox.
fn vendor_settings(sandbox_url: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "KEFU_CALLBACKS_YUNZHENJI_ACCOUNTS",
            YUNZHENJI_ACCOUNT.to_owned(),
        ),
        (
            "KEFU_YUNZHENJI_WECOM_SALES_APP_ID",
            DEFAULT_YZJ_APP_ID.to_owned(),
        ),
        (
            "KEFU_YUNZHENJI_WECOM_SALES_ACCESS_TOKEN",
            DEFAULT_YZJ_ACCESS_TOKEN.to_owned(),
        ),
        (
            "KEFU_YUNZHENJI_WECOM_SALES_WXID",
            DEFAULT_YZJ_WXID.to_owned(),
        ),
        (
            "KEFU_YUNZHENJI_WECOM_SALES_BASE_URL",
            sandbox_url.to_owned(),
        ),
        (
            "KEFU_YUNZHENJI_WECOM_SALES_CALLBACK_SECRET",
            YUNZHENJI_CALLBACK_SECRET.to_owned(),
        ),
        (
            "KEFU_YUNZHENJI_WECOM_SALES_CONFIRM_WINDOW_SECS",
            YUNZHENJI_CONFIRM_WINDOW_SECS.to_string(),
        ),
        ("KEFU_DELIVERY_GATEWAY_ACCOUNTS", GATEWAY_ACCOUNT.to_owned()),
        ("KEFU_GATEWAY_FEIHE_BASE_URL", sandbox_url.to_owned()),
    ]
}
