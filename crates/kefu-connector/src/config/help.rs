//! The settings table that `serve --help` ends with, from the registry.

use super::schema::settings;
use super::wechat::{RESERVED_NAME, SECTION, WECHAT_KEYS};

/// The settings table for `serve --help`.
pub fn settings_help() -> String {
    let mut text = String::from("Settings (file key / environment variable [default]):\n");
    for s in settings() {
        let default = match s.default {
            Some("") => " [none]".to_owned(),
            Some(d) => format!(" [{d}]"),
            None => " [required]".to_owned(),
        };
        let secret = if s.secret { " (secret)" } else { "" };
        text.push_str(&format!(
            "  {} / {}{default}{secret}\n      {}\n",
            s.key, s.env, s.help
        ));
    }
    text.push_str(&format!(
        "WeChat accounts, one [{SECTION}.<name>] table each (<name>: a-z, 0-9, _; not `{RESERVED_NAME}`),\n\
         received at /v1/callbacks/wechat/<name> (file key / environment variable [default]):\n"
    ));
    for k in WECHAT_KEYS {
        let default = k.default.map(|d| format!(" [{d}]")).unwrap_or_default();
        let secret = if k.secret { " (secret)" } else { "" };
        text.push_str(&format!(
            "  {SECTION}.<name>.{} / KEFU_WECHAT_<NAME>_{}{default}{secret}\n      {}\n",
            k.key,
            k.key.to_ascii_uppercase(),
            k.help
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_lists_every_setting() {
        let help = settings_help();
        for s in settings() {
            assert!(help.contains(s.key) && help.contains(s.env), "{}", s.key);
        }
        for k in WECHAT_KEYS {
            assert!(
                help.contains(&format!("wechat.<name>.{}", k.key)),
                "{}",
                k.key
            );
            assert!(help.contains(&format!(
                "KEFU_WECHAT_<NAME>_{}",
                k.key.to_ascii_uppercase()
            )));
        }
        assert!(
            help.contains("KEFU_SERVER_API_KEY [required] (secret)"),
            "{help}"
        );
        assert!(
            help.contains("KEFU_TOKENS_FETCH_TIMEOUT_MS [5000]"),
            "{help}"
        );
        assert!(
            help.contains("KEFU_WECHAT_<NAME>_API_BASE_URL [https://api.weixin.qq.com]"),
            "{help}"
        );
    }
}
