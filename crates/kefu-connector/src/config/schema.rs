//! The registry of sections: which module owns which settings. The environment variables, the
//! defaults, the check of a config file's sections and keys, and `--help` are all derived from
//! it, so a provider's section is one module that lists its settings plus one line here.

use std::path::Path;

use super::setting::Setting;
use super::tables::Tables;
use super::{
    ConfigError, console, delivery, dialogue, gateway, inbound, server, store, wechat, yunzhenji,
};

/// Every flat setting (`[section]` key), by owning module, in the order `--help` lists them. The
/// account tables are described by [`WECHAT_KEYS`](super::WECHAT_KEYS),
/// [`YUNZHENJI_KEYS`](super::YUNZHENJI_KEYS) and [`GATEWAY_KEYS`](super::GATEWAY_KEYS).
pub const SECTIONS: &[&[Setting]] = &[
    server::SETTINGS,
    dialogue::SETTINGS,
    delivery::SETTINGS,
    store::SETTINGS,
    inbound::SETTINGS,
    wechat::SETTINGS,
    yunzhenji::SETTINGS,
    gateway::SETTINGS,
    console::SETTINGS,
];

/// The kinds of account table, in the order `--help` lists them.
pub(crate) const TABLES: &[&Tables] = &[&wechat::TABLES, &yunzhenji::TABLES, &gateway::TABLES];

/// Every flat setting.
pub fn settings() -> impl Iterator<Item = &'static Setting> {
    SECTIONS.iter().flat_map(|section| section.iter())
}

/// The setting with this `section.name` key.
pub fn find_setting(key: &str) -> Option<&'static Setting> {
    settings().find(|setting| setting.key == key)
}

/// Checks that every section and key of a config file is known, naming the ones that are.
pub(crate) fn check_file(table: &toml::Table, path: &Path) -> Result<(), ConfigError> {
    for (section, entries) in table {
        let toml::Value::Table(entries) = entries else {
            return Err(ConfigError(format!(
                "{}: `{section}` must be a [section]; known settings: {}",
                path.display(),
                known(settings())
            )));
        };
        if let Some(tables) = TABLES.iter().find(|tables| tables.section == section) {
            tables.check_tables(entries, path)?;
            continue;
        }
        let in_section = || settings().filter(|setting| setting.section() == section);
        if in_section().next().is_none() {
            let names = sections();
            return Err(ConfigError(format!(
                "{}: unknown section [{section}]{}; known sections: {}, and {} tables",
                path.display(),
                did_you_mean(
                    section,
                    names
                        .iter()
                        .copied()
                        .chain(TABLES.iter().map(|tables| tables.section)),
                    ""
                ),
                names
                    .iter()
                    .map(|name| format!("[{name}]"))
                    .collect::<Vec<_>>()
                    .join(", "),
                TABLES
                    .iter()
                    .map(|tables| format!("[{}.<name>]", tables.section))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        for name in entries.keys() {
            let key = format!("{section}.{name}");
            if find_setting(&key).is_none() {
                return Err(ConfigError(format!(
                    "{}: unknown setting `{key}`{}; the [{section}] section takes {}",
                    path.display(),
                    did_you_mean(
                        name,
                        in_section().map(|setting| setting.name()),
                        &format!("{section}.")
                    ),
                    known(in_section())
                )));
            }
        }
    }
    Ok(())
}

/// The keys of `settings`, for a message.
fn known<'a>(settings: impl Iterator<Item = &'a Setting>) -> String {
    settings
        .map(|setting| setting.key)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `[section]` names, in order, each once.
fn sections() -> Vec<&'static str> {
    let mut names = Vec::new();
    for setting in settings() {
        if !names.contains(&setting.section()) {
            names.push(setting.section());
        }
    }
    names
}

/// ` (did you mean `…`?)` with the known name closest to a mistyped one, if one is close;
/// `prefix` goes before the name shown.
pub(crate) fn did_you_mean<'a>(
    unknown: &str,
    known: impl Iterator<Item = &'a str>,
    prefix: &str,
) -> String {
    // clap's threshold for its own suggestions.
    const CLOSE: f64 = 0.7;
    known
        .map(|name| (strsim::jaro(unknown, name), name))
        .filter(|(similarity, _)| *similarity > CLOSE)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map_or(String::new(), |(_, name)| {
            format!(" (did you mean `{prefix}{name}`?)")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::layers::variable_of;

    /// The environment provider names a value's variable by this rule: a setting whose declared
    /// variable broke it would be read from one variable and reported as another.
    #[test]
    fn every_variable_follows_its_key() {
        for setting in settings() {
            assert_eq!(setting.env, variable_of(setting.key), "{}", setting.key);
        }
    }

    #[test]
    fn keys_are_unique() {
        let mut keys: Vec<&str> = settings().map(|s| s.key).collect();
        let count = keys.len();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), count);
    }

    #[test]
    fn unknown_sections_and_keys_name_what_is_known() {
        let path = Path::new("kefu.toml");
        let check = |text: &str| check_file(&toml::from_str(text).unwrap(), path);
        let err = check("[dialogue]\ntokn = \"x\"\n").unwrap_err().to_string();
        assert!(err.starts_with("kefu.toml: unknown setting `dialogue.tokn` (did you mean `dialogue.token`?); the [dialogue] section takes dialogue.token, dialogue.aes_key"), "{err}");
        let err = check("[dialog]\ntoken = \"x\"\n").unwrap_err().to_string();
        assert!(
            err.contains("unknown section [dialog] (did you mean `dialogue`?); known sections: [server], [metrics]"),
            "{err}"
        );
        assert!(
            err.ends_with("and [wechat.<name>], [yunzhenji.<name>], [gateway.<name>] tables"),
            "{err}"
        );
        let err = check("[server]\nzzz = 1\n").unwrap_err().to_string();
        assert!(
            err.contains("unknown setting `server.zzz`; the [server]"),
            "nothing close: {err}"
        );
        let err = check("listen = 1\n").unwrap_err().to_string();
        assert!(err.contains("`listen` must be a [section]"), "{err}");
        check("[server]\nlisten = \"x\"\n[wechat.a]\ntoken = \"t\"\n").unwrap();
    }
}
