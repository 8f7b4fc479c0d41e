//! `[console]`: the operator console in the browser, off unless a password hash is set.

use std::time::Duration;

use super::ConfigError;
use super::layers::Layers;
use super::secret::Secret;
use super::setting::Setting;

const PASSWORD_HASH: Setting = Setting::optional(
    "console.password_hash",
    "KEFU_CONSOLE_PASSWORD_HASH",
    "",
    "the operators' password as an argon2 PHC string ($argon2id$v=19$…), made by `kefu-connector console hash-password`; set, `serve` serves the operator console at /console; unset, there is none",
)
.secret();
const SESSION_TTL_SECS: Setting = Setting::optional(
    "console.session_ttl_secs",
    "KEFU_CONSOLE_SESSION_TTL_SECS",
    "28800",
    "how long a console login lasts, in seconds (60 to 604800); then the operator logs in again",
);
const SECURE_COOKIE: Setting = Setting::optional(
    "console.secure_cookie",
    "KEFU_CONSOLE_SECURE_COOKIE",
    "auto",
    "whether the session cookie is `Secure` (sent over HTTPS only): `auto` when the request came through a TLS proxy that says so (`X-Forwarded-Proto: https`), `always`, or `never`",
);

const TRUSTED_PROXIES: Setting = Setting::optional(
    "console.trusted_proxies",
    "KEFU_CONSOLE_TRUSTED_PROXIES",
    "",
    "comma-separated IP addresses of the reverse proxies in front of the console, such as 127.0.0.1; from them the client's address is read from X-Forwarded-For (to slow wrong passwords per client, not per proxy) and the host from X-Forwarded-Host; unset, the connection's address is the client's",
);

/// The settings of this module, in the order `--help` lists them.
pub(crate) const SETTINGS: &[Setting] = &[
    PASSWORD_HASH,
    SESSION_TTL_SECS,
    SECURE_COOKIE,
    TRUSTED_PROXIES,
];

/// When the session cookie carries `Secure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecureCookie {
    /// When the request says it came over HTTPS (`X-Forwarded-Proto: https`).
    Auto,
    /// Always.
    Always,
    /// Never (a console reached over plain HTTP on a trusted network).
    Never,
}

/// The validated `[console]` section: present only when a password hash is set.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// The argon2 PHC string the login's password is checked against.
    pub password_hash: Secret,
    /// How long a login lasts.
    pub session_ttl: Duration,
    /// When the session cookie is `Secure`.
    pub secure_cookie: SecureCookie,
    /// The reverse proxies whose `X-Forwarded-For` and `X-Forwarded-Host` are believed.
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

/// Reads and checks the settings of this module.
pub(crate) fn load(layers: &Layers) -> Result<Option<ConsoleConfig>, ConfigError> {
    let session_ttl = layers.setting(&SESSION_TTL_SECS)?.secs(60, 604_800)?;
    let secure_cookie = layers.setting(&SECURE_COOKIE)?.choice(
        &[
            ("auto", SecureCookie::Auto),
            ("always", SecureCookie::Always),
            ("never", SecureCookie::Never),
        ],
        "`auto`, `always` or `never`",
    )?;
    let proxies = layers.setting(&TRUSTED_PROXIES)?;
    let trusted_proxies = proxies
        .text()
        .split(',')
        .map(str::trim)
        .filter(|text| !text.is_empty())
        .map(|text| text.parse())
        .collect::<Result<Vec<std::net::IpAddr>, _>>()
        .map_err(|_| proxies.rejected("comma-separated IP addresses such as 127.0.0.1, ::1"))?;
    let hash = layers.setting(&PASSWORD_HASH)?;
    let text = hash.text().trim();
    if text.is_empty() {
        return Ok(None);
    }
    let phc = argon2::PasswordHash::new(text).map_err(|_| {
        hash.rejected(
            "an argon2 PHC string such as $argon2id$v=19$m=19456,t=2,p=1$…, made by `kefu-connector console hash-password`",
        )
    })?;
    if argon2::Algorithm::try_from(phc.algorithm).is_err() || phc.hash.is_none() {
        return Err(hash.invalid(
            "an argon2 PHC string (argon2id, argon2i or argon2d), made by `kefu-connector console hash-password`",
            &format!("a {} string", phc.algorithm),
        ));
    }
    Ok(Some(ConsoleConfig {
        password_hash: Secret::new(text),
        session_ttl,
        secure_cookie,
        trusted_proxies,
    }))
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::config::testing::*;

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$LygTMR99kM4RdTEFCIcjGA$EgzYeaZWPmVsENMZlNtkRqDqW/HbiKNCNt+OPKaN4as";

    #[test]
    fn the_console_is_off_without_a_hash() {
        let config = Config::load(None, env_of(&minimal())).unwrap();
        assert!(config.console.is_none());
    }

    #[test]
    fn a_hash_turns_it_on_with_defaults() {
        let mut env = minimal();
        env.push(("KEFU_CONSOLE_PASSWORD_HASH", HASH));
        let console = Config::load(None, env_of(&env)).unwrap().console.unwrap();
        assert_eq!(console.password_hash.expose(), HASH);
        assert_eq!(console.session_ttl.as_secs(), 28_800);
        assert_eq!(console.secure_cookie, super::SecureCookie::Auto);
    }

    #[test]
    fn a_hash_that_is_not_argon2_is_refused_without_showing_it() {
        for bad in [
            "hunter2-plain-password",
            "$2b$12$abcdefghijklmnopqrstuuA6gZ6f3M4Ijg1eRFDKQnHb9a5Y0pyuS",
            "$scrypt$ln=16,r=8,p=1$aM15713r3Xsvxbi31lqr1Q$nFNh2CVHVjNldFVKDHDlm4CbdRSCdEBsjjJxD+iCs5E",
        ] {
            let mut env = minimal();
            env.push(("KEFU_CONSOLE_PASSWORD_HASH", bad));
            let err = Config::load(None, env_of(&env)).unwrap_err().to_string();
            assert!(
                err.starts_with("console.password_hash (from KEFU_CONSOLE_PASSWORD_HASH): expected an argon2 PHC string"),
                "{err}"
            );
            assert!(!err.contains(bad), "{err}");
        }
    }

    #[test]
    fn the_ttl_and_cookie_are_checked() {
        let mut env = minimal();
        env.push(("KEFU_CONSOLE_SECURE_COOKIE", "sometimes"));
        let err = Config::load(None, env_of(&env)).unwrap_err().to_string();
        assert_eq!(
            err,
            "console.secure_cookie (from KEFU_CONSOLE_SECURE_COOKIE): expected `auto`, `always` or `never`, got \"sometimes\""
        );
        let mut env = minimal();
        env.push(("KEFU_CONSOLE_SESSION_TTL_SECS", "10"));
        assert!(Config::load(None, env_of(&env)).is_err());
        let mut env = minimal();
        env.push(("KEFU_CONSOLE_PASSWORD_HASH", HASH));
        env.push(("KEFU_CONSOLE_TRUSTED_PROXIES", "127.0.0.1, ::1"));
        let console = Config::load(None, env_of(&env)).unwrap().console.unwrap();
        assert_eq!(console.trusted_proxies.len(), 2);
        env.push(("KEFU_CONSOLE_TRUSTED_PROXIES", "10.0.0.0/8"));
        let err = Config::load(None, env_of(&env)).unwrap_err().to_string();
        assert_eq!(
            err,
            "console.trusted_proxies (from KEFU_CONSOLE_TRUSTED_PROXIES): expected comma-separated IP addresses such as 127.0.0.1, ::1, got \"10.0.0.0/8\""
        );
    }
}
