//! The settings table that `serve --help` ends with, from the registry.

use super::schema::{TABLES, settings};
use super::tables::RESERVED_NAME;

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
    for tables in TABLES {
        let section = tables.section;
        let upper = section.to_ascii_uppercase();
        text.push_str(&format!(
            "{}s, one [{section}.<name>] table each (<name>: a-z, 0-9, _; not `{RESERVED_NAME}`; unique across wechat, yunzhenji and gateway accounts),\n\
             {} (file key / environment variable [default]):\n",
            capitalized(tables.label),
            tables.purpose
        ));
        for k in tables.keys {
            let default = k.default.map(|d| format!(" [{d}]")).unwrap_or_default();
            let secret = if k.secret { " (secret)" } else { "" };
            text.push_str(&format!(
                "  {section}.<name>.{} / KEFU_{upper}_<NAME>_{}{default}{secret}\n      {}\n",
                k.key,
                k.key.to_ascii_uppercase(),
                k.help
            ));
        }
    }
    text
}

fn capitalized(label: &str) -> String {
    let mut chars = label.chars();
    chars.next().map_or(String::new(), |first| {
        first.to_uppercase().chain(chars).collect()
    })
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
        for tables in TABLES {
            for k in tables.keys {
                let key = format!("{}.<name>.{}", tables.section, k.key);
                assert!(help.contains(&key), "{key}");
                assert!(help.contains(&format!(
                    "KEFU_{}_<NAME>_{}",
                    tables.section.to_ascii_uppercase(),
                    k.key.to_ascii_uppercase()
                )));
            }
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
        assert!(
            help.contains("KEFU_YUNZHENJI_<NAME>_CALLBACK_SECRET (secret)"),
            "{help}"
        );
        assert!(
            help.contains("KEFU_GATEWAY_<NAME>_SYSTEM [NEW_MEMBER]"),
            "{help}"
        );
        assert!(help.contains("Yunzhenji accounts, one [yunzhenji.<name>] table each"));
    }
}
