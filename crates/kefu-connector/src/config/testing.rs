//! What the unit tests of every section share: a minimal valid environment and loading with a
//! file.

use std::collections::BTreeMap;

use super::{Config, ConfigError};

/// A valid EncodingAESKey.
pub(crate) const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

/// Another valid EncodingAESKey.
pub(crate) const OLD_KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";

/// An environment lookup over `pairs`.
pub(crate) fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

/// The settings without which nothing loads.
pub(crate) fn minimal() -> Vec<(&'static str, &'static str)> {
    vec![
        ("KEFU_SERVER_API_KEY", "0123456789abcdef-desk"),
        ("KEFU_DIALOGUE_TOKEN", "tokentokentoken"),
        ("KEFU_DIALOGUE_AES_KEY", KEY),
        ("KEFU_DIALOGUE_BOT_APPID", "Gg8HejYTkUsEIlG"),
    ]
}

/// Loads `file` as the config file, under `env`.
pub(crate) fn load_with(file: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kefu.toml");
    std::fs::write(&path, file).unwrap();
    Config::load(Some(&path), env_of(env))
}

/// Loads the environment `env` alone, for the message of the error it must give.
pub(crate) fn error_of(env: &[(&str, &str)]) -> String {
    Config::load(None, env_of(env)).unwrap_err().to_string()
}
