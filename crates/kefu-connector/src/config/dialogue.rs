//! `[dialogue]`: the Dialogue Open Platform provider's account (protocols.md §4).

use std::time::Duration;

use super::ConfigError;
use super::layers::Layers;
use super::secret::Secret;
use super::setting::Setting;

const TOKEN: Setting = Setting::required(
    "dialogue.token",
    "KEFU_DIALOGUE_TOKEN",
    "the platform TOKEN (发布管理 → 应用绑定 → 开放API)",
)
.secret();
const AES_KEY: Setting = Setting::required(
    "dialogue.aes_key",
    "KEFU_DIALOGUE_AES_KEY",
    "the 43-character EncodingAESKey",
)
.secret();
const BOT_APPID: Setting = Setting::required(
    "dialogue.bot_appid",
    "KEFU_DIALOGUE_BOT_APPID",
    "the bot APPID, the receive-id of every encrypted payload",
);
const APPID: Setting = Setting::optional(
    "dialogue.appid",
    "KEFU_DIALOGUE_APPID",
    "",
    "default Official Account / Mini Program AppID for messages and kefustate calls that name none",
);
const BASE_URL: Setting = Setting::optional(
    "dialogue.base_url",
    "KEFU_DIALOGUE_BASE_URL",
    "https://chatbot.weixin.qq.com/openapi",
    "platform base URL (the backup host is https://openai.weixin.qq.com/openapi)",
);
const CONNECT_TIMEOUT_MS: Setting = Setting::optional(
    "dialogue.connect_timeout_ms",
    "KEFU_DIALOGUE_CONNECT_TIMEOUT_MS",
    "3000",
    "connect timeout towards the platform, in milliseconds",
);
const REQUEST_TIMEOUT_MS: Setting = Setting::optional(
    "dialogue.request_timeout_ms",
    "KEFU_DIALOGUE_REQUEST_TIMEOUT_MS",
    "10000",
    "whole-request timeout towards the platform, in milliseconds",
);

/// The settings of this section, in the order `--help` lists them.
pub(crate) const SETTINGS: &[Setting] = &[
    TOKEN,
    AES_KEY,
    BOT_APPID,
    APPID,
    BASE_URL,
    CONNECT_TIMEOUT_MS,
    REQUEST_TIMEOUT_MS,
];

/// The Dialogue platform account.
#[derive(Debug, Clone)]
pub struct DialogueConfig {
    /// The TOKEN.
    pub token: Secret,
    /// The EncodingAESKey.
    pub aes_key: Secret,
    /// The bot APPID.
    pub bot_appid: String,
    /// Default OA/MP AppID, if any.
    pub appid: Option<String>,
    /// Platform base URL.
    pub base_url: String,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Request timeout.
    pub request_timeout: Duration,
}

/// Reads and checks the section.
pub(crate) fn load(layers: &Layers) -> Result<DialogueConfig, ConfigError> {
    let token = layers.setting(&TOKEN)?;
    token.non_empty("the platform TOKEN")?;
    if token.text().contains(['/', '?', '#', ' ']) {
        return Err(token.invalid(
            "a TOKEN without '/', '?', '#' or spaces (it is a URL path segment)",
            "a value containing one",
        ));
    }
    let aes_key = layers.setting(&AES_KEY)?;
    // The key's own validation names the length or the position of a bad character, never the
    // key.
    wxbizmsgcrypt::AesKey::parse(aes_key.text())
        .map_err(|e| ConfigError(format!("{}: {e}", aes_key.place())))?;
    let bot_appid = layers.setting(&BOT_APPID)?;
    Ok(DialogueConfig {
        token: Secret::new(token.text()),
        aes_key: Secret::new(aes_key.text()),
        bot_appid: bot_appid.non_empty("the bot APPID")?.to_owned(),
        appid: layers
            .optional(&APPID)?
            .map(|appid| appid.text().to_owned()),
        base_url: layers.setting(&BASE_URL)?.base_url()?,
        connect_timeout: layers.setting(&CONNECT_TIMEOUT_MS)?.millis(1, 600_000)?,
        request_timeout: layers.setting(&REQUEST_TIMEOUT_MS)?.millis(1, 600_000)?,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::testing::*;

    #[test]
    fn the_token_is_a_path_segment_and_never_shown() {
        let mut env = minimal();
        env.push(("KEFU_DIALOGUE_TOKEN", "SECRET/TOKEN"));
        let err = error_of(&env);
        assert_eq!(
            err,
            "dialogue.token (from KEFU_DIALOGUE_TOKEN): expected a TOKEN without '/', '?', '#' or spaces (it is a URL path segment), got a value containing one"
        );
    }

    #[test]
    fn the_base_url_is_checked_and_trimmed() {
        let config = load_with(
            "[dialogue]\nbase_url = \"http://127.0.0.1:9000/openapi/\"\nappid = \"wx1\"\n",
            &minimal(),
        )
        .unwrap();
        assert_eq!(config.dialogue.base_url, "http://127.0.0.1:9000/openapi");
        assert_eq!(config.dialogue.appid.as_deref(), Some("wx1"));
        let err = load_with("[dialogue]\nbase_url = \"chatbot\"\n", &minimal())
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "dialogue.base_url (from the config file): expected an http:// or https:// URL, got \"chatbot\""
        );
    }
}
