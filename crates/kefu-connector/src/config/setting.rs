//! The declaration of a setting: what each section module lists, and what the environment
//! variables, the defaults, the unknown-key check and `--help` are all derived from.

/// One setting: its key in the file, its environment variable, its default and its meaning.
#[derive(Debug)]
pub struct Setting {
    /// `section.name` in the TOML file.
    pub key: &'static str,
    /// The environment variable that overrides it: `KEFU_` and the key in upper case, with `_`
    /// for the dot.
    pub env: &'static str,
    /// The default, if the setting is optional (`""` for "unset").
    pub default: Option<&'static str>,
    /// Whether the value must never be shown.
    pub secret: bool,
    /// What it is.
    pub help: &'static str,
}

impl Setting {
    /// A setting without a default.
    pub(crate) const fn required(key: &'static str, env: &'static str, help: &'static str) -> Self {
        Setting {
            key,
            env,
            default: None,
            secret: false,
            help,
        }
    }

    /// A setting with a default (`""` for "unset").
    pub(crate) const fn optional(
        key: &'static str,
        env: &'static str,
        default: &'static str,
        help: &'static str,
    ) -> Self {
        Setting {
            default: Some(default),
            ..Setting::required(key, env, help)
        }
    }

    /// The same setting, whose value is never shown.
    pub(crate) const fn secret(self) -> Self {
        Setting {
            secret: true,
            ..self
        }
    }

    /// The `[section]` the setting belongs to.
    pub fn section(&self) -> &'static str {
        self.key
            .split_once('.')
            .map_or(self.key, |(section, _)| section)
    }

    /// The key within its section.
    pub fn name(&self) -> &'static str {
        self.key.split_once('.').map_or(self.key, |(_, name)| name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_is_the_key_before_the_dot() {
        let setting = Setting::optional("server.listen", "KEFU_SERVER_LISTEN", "x", "help");
        assert_eq!((setting.section(), setting.name()), ("server", "listen"));
        assert!(!setting.secret);
        assert!(Setting::required("a.b", "KEFU_A_B", "h").secret().secret);
    }
}
