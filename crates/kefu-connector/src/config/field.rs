//! One setting's value as the layers resolved it, where it came from, and the checks that every
//! section applies to it. Every message names the key and its origin and says what was expected;
//! a secret's value is never part of one.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::ConfigError;

/// Where a value came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The config file.
    File,
    /// The named environment variable (or the setting of that name given to
    /// [`Config::from_settings`](super::Config::from_settings)).
    Env(String),
    /// The setting's default.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File => f.write_str("from the config file"),
            Origin::Env(name) => write!(f, "from {name}"),
            Origin::Default => f.write_str("default"),
        }
    }
}

/// A setting's value, as text, with its key and origin.
#[derive(Debug, Clone)]
pub(crate) struct Field {
    key: String,
    text: String,
    origin: Origin,
    secret: bool,
}

impl Field {
    /// A value of `key`; a `secret` one is never shown in a message.
    pub(crate) fn new(key: String, text: String, origin: Origin, secret: bool) -> Field {
        Field {
            key,
            text,
            origin,
            secret,
        }
    }

    /// The value.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// `key (origin)`, the way every message names a value.
    pub(crate) fn place(&self) -> String {
        format!("{} ({})", self.key, self.origin)
    }

    /// `key (origin): expected …, got …`.
    pub(crate) fn invalid(&self, expected: &str, shown: &str) -> ConfigError {
        ConfigError(format!(
            "{}: expected {expected}, got {shown}",
            self.place()
        ))
    }

    /// As [`Field::invalid`], showing the value itself unless it is secret.
    pub(crate) fn rejected(&self, expected: &str) -> ConfigError {
        self.invalid(expected, &self.shown())
    }

    /// The value as a message may show it: quoted, or for a secret only its length.
    fn shown(&self) -> String {
        if self.secret {
            format!(
                "a value of {} characters (not shown: it is secret)",
                self.text.chars().count()
            )
        } else {
            format!("{:?}", self.text)
        }
    }

    /// A whole number within `min..=max`.
    pub(crate) fn number<T: FromStr + PartialOrd + fmt::Display>(
        &self,
        min: T,
        max: T,
    ) -> Result<T, ConfigError> {
        match self.text.trim().parse::<T>() {
            Ok(n) if n >= min && n <= max => Ok(n),
            _ => Err(self.rejected(&format!("a whole number from {min} to {max}"))),
        }
    }

    /// A number of milliseconds within `min..=max`.
    pub(crate) fn millis(&self, min: u64, max: u64) -> Result<Duration, ConfigError> {
        self.number(min, max).map(Duration::from_millis)
    }

    /// A number of seconds within `min..=max`.
    pub(crate) fn secs(&self, min: u64, max: u64) -> Result<Duration, ConfigError> {
        self.number(min, max).map(Duration::from_secs)
    }

    /// The value, which must not be blank.
    pub(crate) fn non_empty(&self, expected: &str) -> Result<&str, ConfigError> {
        if self.text.trim().is_empty() {
            return Err(self.invalid(expected, "an empty value"));
        }
        Ok(&self.text)
    }

    /// One of the spellings in `choices`; `expected` lists them for the message.
    pub(crate) fn choice<T: Copy>(
        &self,
        choices: &[(&str, T)],
        expected: &str,
    ) -> Result<T, ConfigError> {
        choices
            .iter()
            .find(|(spelling, _)| *spelling == self.text)
            .map(|(_, value)| *value)
            .ok_or_else(|| self.rejected(expected))
    }

    /// An `http://` or `https://` URL with a host, without its trailing slashes, so that paths
    /// can be appended to it.
    pub(crate) fn base_url(&self) -> Result<String, ConfigError> {
        if !is_http_url(&self.text) {
            return Err(self.rejected("an http:// or https:// URL"));
        }
        Ok(self.text.trim_end_matches('/').to_owned())
    }
}

/// Whether `text` is an `http://` or `https://` URL with a host.
pub(crate) fn is_http_url(text: &str) -> bool {
    (text.starts_with("http://") || text.starts_with("https://"))
        && text
            .parse::<hyper::Uri>()
            .is_ok_and(|uri| uri.host().is_some_and(|host| !host.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(text: &str, secret: bool) -> Field {
        Field::new(
            "s.k".into(),
            text.into(),
            Origin::Env("KEFU_S_K".into()),
            secret,
        )
    }

    #[test]
    fn numbers_are_bounded_and_named() {
        assert_eq!(field(" 42 ", false).number(1u32, 100).unwrap(), 42);
        assert_eq!(
            field("lots", false)
                .number(1u32, 100)
                .unwrap_err()
                .to_string(),
            "s.k (from KEFU_S_K): expected a whole number from 1 to 100, got \"lots\""
        );
        assert!(field("0", false).millis(1, 10).is_err());
        assert_eq!(
            field("7", false).secs(1, 10).unwrap(),
            Duration::from_secs(7)
        );
    }

    #[test]
    fn a_secret_value_is_never_shown() {
        let err = field("hunter2hunter2", true)
            .number(1u32, 2)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(
            err.ends_with("got a value of 14 characters (not shown: it is secret)"),
            "{err}"
        );
    }

    #[test]
    fn base_urls_need_a_scheme_and_a_host() {
        assert_eq!(
            field("https://h/x/", false).base_url().unwrap(),
            "https://h/x"
        );
        for bad in ["ftp://h", "http://", "h.example"] {
            assert!(field(bad, false).base_url().is_err(), "{bad}");
        }
    }

    #[test]
    fn choices_list_what_is_expected() {
        let choices = [("a", 1), ("b", 2)];
        assert_eq!(field("b", false).choice(&choices, "`a` or `b`").unwrap(), 2);
        assert_eq!(
            field("c", false)
                .choice(&choices, "`a` or `b`")
                .unwrap_err()
                .to_string(),
            "s.k (from KEFU_S_K): expected `a` or `b`, got \"c\""
        );
    }
}
