//! The operators' password: argon2id PHC strings, and `kefu-connector console hash-password`,
//! which makes one for `[console] password_hash`.

use std::io::{BufRead as _, IsTerminal as _};
use std::process::ExitCode;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use clap::{Args, Subcommand};

/// The shortest password `hash-password` accepts.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// `console …`: the operator console.
#[derive(Debug, Subcommand)]
pub enum ConsoleArgs {
    /// Make the argon2id hash of a password for `[console] password_hash`.
    #[command(long_about = HASH_LONG_HELP)]
    HashPassword(HashPasswordArgs),
}

/// The long help of `console hash-password`.
const HASH_LONG_HELP: &str = "Makes the argon2id hash (a PHC string, $argon2id$v=19$…) of the console's password, for `[console] password_hash` or KEFU_CONSOLE_PASSWORD_HASH. With that set, `serve` serves the operator console at /console, where operators log in with the password.\n\nOn a terminal, the password is asked twice without echo; otherwise the first line of standard input is the password (`printf '%s\\n' \"$PASSWORD\" | kefu-connector console hash-password`). It must have at least 12 characters. The hash is printed on standard output; the password is never printed or stored.";

/// Arguments of `console hash-password`.
#[derive(Debug, Args)]
pub struct HashPasswordArgs {}

/// The argon2id hasher with the OWASP-recommended parameters (19 MiB, 2 passes, 1 lane).
fn hasher() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::default())
}

/// The PHC string of `password` with a fresh random salt.
///
/// ```
/// use kefu_connector::console::password::{hash_password, verify_password};
///
/// let hash = hash_password("correct horse battery staple")?;
/// assert!(hash.starts_with("$argon2id$v=19$"));
/// assert!(verify_password(&hash, "correct horse battery staple"));
/// assert!(!verify_password(&hash, "Correct horse battery staple"));
/// # Ok::<(), argon2::password_hash::Error>(())
/// ```
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(hasher()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Whether `password` matches the PHC string `hash` (with the parameters the string names).
/// The comparison is constant-time; a malformed hash matches nothing.
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// Reads the password: twice without echo on a terminal, else the first line of stdin.
fn read_password() -> Result<String, String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Console password: ")
            .map_err(|e| format!("cannot read the password: {e}"))?;
        let again = rpassword::prompt_password("The same again: ")
            .map_err(|e| format!("cannot read the password: {e}"))?;
        if first != again {
            return Err("the two passwords differ; nothing was made".into());
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Runs `console …`.
pub fn run(args: ConsoleArgs) -> ExitCode {
    match args {
        ConsoleArgs::HashPassword(HashPasswordArgs {}) => {
            let password = match read_password() {
                Ok(password) => password,
                Err(error) => {
                    eprintln!("error: {error}");
                    return ExitCode::FAILURE;
                }
            };
            if password.chars().count() < MIN_PASSWORD_CHARS {
                eprintln!(
                    "error: the password has {} characters; give one of at least {MIN_PASSWORD_CHARS}",
                    password.chars().count()
                );
                return ExitCode::from(2);
            }
            match hash_password(&password) {
                Ok(hash) => {
                    println!("{hash}");
                    eprintln!(
                        "Set it as [console] password_hash (or KEFU_CONSOLE_PASSWORD_HASH) and restart serve; the console is then at /console."
                    );
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("error: cannot hash the password: {error}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let hash = hash_password("a long enough password").unwrap();
        assert!(verify_password(&hash, "a long enough password"));
        assert!(!verify_password(&hash, "a long enough passworD"));
        assert!(!verify_password(&hash, ""));
        assert_ne!(hash, hash_password("a long enough password").unwrap());
    }

    #[test]
    fn a_malformed_hash_matches_nothing() {
        assert!(!verify_password("", ""));
        assert!(!verify_password("$argon2id$v=19$nonsense", "x"));
    }
}
