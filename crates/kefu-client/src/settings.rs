//! What is wrong with a vendor provider's settings (yunzhenji, the company gateway). Never
//! shows a secret.

use core::fmt;

/// A setting a provider's builder refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SettingsError {
    /// A required setting is empty (or blank).
    Empty {
        /// Which one (`name`, `app_id`, `access_token`, `wxid`, `base_url`, `system`).
        field: &'static str,
    },
    /// A setting holds a character it cannot carry (a space in an id, a control character in a
    /// header).
    Invalid {
        /// Which one.
        field: &'static str,
    },
    /// The base URL cannot be used.
    BaseUrl {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A timeout or a window is zero.
    Zero {
        /// Which one.
        which: &'static str,
    },
    /// The TLS configuration could not be built.
    Tls,
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingsError::Empty { field } => write!(f, "{field} is empty"),
            SettingsError::Invalid { field } => {
                write!(f, "{field} holds a space or a control character")
            }
            SettingsError::BaseUrl { reason } => write!(f, "base_url {reason}"),
            SettingsError::Zero { which } => write!(f, "the {which} must be non-zero"),
            SettingsError::Tls => f.write_str("the TLS configuration could not be built"),
        }
    }
}

impl std::error::Error for SettingsError {}

/// Refuses an empty `value`, and one with whitespace or control characters.
pub(crate) fn token_like(field: &'static str, value: &str) -> Result<(), SettingsError> {
    if value.trim().is_empty() {
        return Err(SettingsError::Empty { field });
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(SettingsError::Invalid { field });
    }
    Ok(())
}
