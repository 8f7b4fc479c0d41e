//! `kefu-connector crypt`: WXBizMsgCrypt by hand.
//!
//! Scripts call these subcommands, so their interface is fixed: JSON or raw bytes on stdout, one
//! `error <code> (<name>): <reason>` line on stderr and exit status 1 on failure, exit status 2 on a
//! usage or configuration error (`error: <reason>`).
//!
//! The credentials come from the same places as `serve`'s: the flags, else the
//! `KEFU_DIALOGUE_*` variables, else the `dialogue` section of the `--config` file (by default
//! `./kefu.toml` if it exists). Only that section is read: `crypt` needs no server settings.

use std::io::{self, Read as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};
use kefu_payload::envelope;
use wxbizmsgcrypt::{ErrorCode, MsgCrypt, sign_message};

/// The `crypt` subcommands.
#[derive(Debug, Subcommand)]
pub enum CryptArgs {
    /// Encrypt the message read from stdin (its bytes exactly as given) and sign it.
    ///
    /// Prints one JSON object: {"encrypt", "msg_signature", "timestamp", "nonce"}.
    ///
    /// Example: printf '<xml>…</xml>' | kefu-connector crypt encrypt --token T --aes-key K --bot-appid A
    Encrypt {
        /// Account credentials.
        #[command(flatten)]
        account: Account,
        /// Timestamp to sign with, in Unix seconds [default: now].
        #[arg(long)]
        timestamp: Option<String>,
        /// Nonce to sign with [default: a random 10-digit number].
        #[arg(long)]
        nonce: Option<String>,
    },
    /// Decrypt a ciphertext read from stdin and print the plaintext exactly, with no newline added.
    ///
    /// Stdin may hold the bare base64, an XML envelope (an Encrypt element), or a JSON envelope
    /// ("Encrypt", "encrypt" or the Dialogue platform's "encrypted"); the form is detected.
    /// With --signature, the msg_signature over (token, timestamp, nonce, ciphertext) is checked
    /// first. A reply envelope that carries MsgSignature, TimeStamp and Nonce is checked with them.
    Decrypt {
        /// Account credentials.
        #[command(flatten)]
        account: Account,
        /// The msg_signature to verify (from the callback's query string).
        #[arg(long, requires_all = ["timestamp", "nonce"])]
        signature: Option<String>,
        /// The timestamp from the query string (with --signature).
        #[arg(long, requires = "signature")]
        timestamp: Option<String>,
        /// The nonce from the query string (with --signature).
        #[arg(long, requires = "signature")]
        nonce: Option<String>,
        /// Accept any trailing receive-id instead of --bot-appid (which may then be left out), and
        /// report the one found on stderr.
        #[arg(long)]
        any_appid: bool,
    },
    /// Print the msg_signature of the ciphertext read from stdin: SHA1 over the sorted token,
    /// timestamp, nonce and ciphertext.
    Sign {
        /// The TOKEN.
        #[command(flatten)]
        token: TokenOnly,
        /// The timestamp to sign.
        #[arg(long)]
        timestamp: String,
        /// The nonce to sign.
        #[arg(long)]
        nonce: String,
    },
    /// WeCom URL verification: check the msg_signature over the encrypted echostr, decrypt it and
    /// print what the server must answer.
    ///
    /// Pass echostr as it appears in the query string: a percent-encoded value is decoded once,
    /// and a space (a '+' lost to form decoding) is restored to '+'.
    VerifyUrl {
        /// Account credentials.
        #[command(flatten)]
        account: Account,
        /// The msg_signature query parameter.
        #[arg(long)]
        signature: String,
        /// The timestamp query parameter.
        #[arg(long)]
        timestamp: String,
        /// The nonce query parameter.
        #[arg(long)]
        nonce: String,
        /// The echostr query parameter.
        #[arg(long)]
        echostr: String,
    },
}

/// The config file `crypt` reads credentials from.
#[derive(Debug, Args)]
pub struct ConfigFile {
    /// The TOML configuration file `serve` reads [default: ./kefu.toml if it exists]; only its
    /// dialogue section is used.
    #[arg(long, short)]
    config: Option<PathBuf>,
}

/// The three credentials of an account, from the flags, the environment or the config file.
#[derive(Debug, Args)]
pub struct Account {
    /// The config file.
    #[command(flatten)]
    file: ConfigFile,
    /// The TOKEN [default: dialogue.token].
    #[arg(long, env = "KEFU_DIALOGUE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The 43-character EncodingAESKey [default: dialogue.aes_key].
    #[arg(long, env = "KEFU_DIALOGUE_AES_KEY", hide_env_values = true)]
    aes_key: Option<String>,
    /// The receive-id that trails every plaintext: the bot APPID for the Dialogue platform
    /// [default: dialogue.bot_appid]; for an Official Account's or Mini Program's payloads, its
    /// AppID; for WeCom, the CorpID.
    #[arg(
        long,
        visible_alias = "receive-id",
        env = "KEFU_DIALOGUE_BOT_APPID",
        hide_env_values = true
    )]
    bot_appid: Option<String>,
    /// The old name of --bot-appid, refused with a pointer to the new one.
    #[arg(long, hide = true, value_parser = renamed_appid)]
    appid: Option<String>,
}

/// `--appid` now means the Official Account or Mini Program AppID everywhere; the receive-id
/// flag of `crypt` and `sandbox` is `--bot-appid`. Refusing the old name by name beats clap's
/// guess at a similar flag.
pub fn renamed_appid(_: &str) -> Result<String, String> {
    Err("--appid is now --bot-appid (the bot APPID, the receive-id); --appid means the Official Account or Mini Program AppID, which this command does not take".into())
}

/// The TOKEN alone, for `sign`.
#[derive(Debug, Args)]
pub struct TokenOnly {
    /// The config file.
    #[command(flatten)]
    file: ConfigFile,
    /// The TOKEN [default: dialogue.token].
    #[arg(long, env = "KEFU_DIALOGUE_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// One setting, from its flag or variable (clap has read both) or else the config file.
fn setting(
    file: &ConfigFile,
    given: &Option<String>,
    key: &'static str,
    flag: &str,
    what: &str,
) -> Result<String, CryptError> {
    crate::config::check_given_file(file.config.as_deref())
        .map_err(|error| CryptError::Usage(error.to_string()))?;
    if let Some(value) = given {
        return Ok(value.clone());
    }
    let path = crate::config::config_file(file.config.as_deref());
    if let Some(path) = &path {
        let settings = crate::config::file_settings(path)
            .map_err(|error| CryptError::Usage(error.to_string()))?;
        if let Some(value) = settings.get(key) {
            return Ok(value.clone());
        }
    }
    let env = crate::config::find_setting(key).map_or("", |s| s.env);
    Err(CryptError::Usage(format!(
        "{what} is missing: give {flag}, set {env}, or set {key} in the config file\n({})",
        crate::config::settings_origin(file.config.as_deref(), path.as_deref())
    )))
}

impl Account {
    /// The crypt of the account; without `receive_id`, one whose receive-id is never checked.
    fn crypt(&self, receive_id: bool) -> Result<MsgCrypt, CryptError> {
        let token = setting(
            &self.file,
            &self.token,
            "dialogue.token",
            "--token",
            "the TOKEN",
        )?;
        let aes_key = setting(
            &self.file,
            &self.aes_key,
            "dialogue.aes_key",
            "--aes-key",
            "the EncodingAESKey",
        )?;
        let bot_appid = if receive_id {
            setting(
                &self.file,
                &self.bot_appid,
                "dialogue.bot_appid",
                "--bot-appid",
                "the bot APPID (the receive-id)",
            )?
        } else {
            self.bot_appid.clone().unwrap_or_default()
        };
        Ok(MsgCrypt::new(token.as_str(), &aes_key, bot_appid.as_bytes()).map_err(Failure::from)?)
    }
}

/// Why a `crypt` subcommand failed.
#[derive(Debug)]
enum CryptError {
    /// A missing or unreadable setting: exit status 2.
    Usage(String),
    /// The payload or the key: exit status 1, with the WXBizMsgCrypt code.
    Crypt(Failure),
}

impl<E: Into<Failure>> From<E> for CryptError {
    fn from(error: E) -> CryptError {
        CryptError::Crypt(error.into())
    }
}

/// A failure reported as `error <code> (<name>): <reason>`.
#[derive(Debug)]
struct Failure {
    code: ErrorCode,
    reason: String,
}

impl From<wxbizmsgcrypt::Error> for Failure {
    fn from(error: wxbizmsgcrypt::Error) -> Failure {
        Failure {
            code: error.error_code(),
            reason: error.to_string(),
        }
    }
}

impl From<kefu_payload::Error> for Failure {
    fn from(error: kefu_payload::Error) -> Failure {
        Failure {
            code: ErrorCode::from_code(error.code()).unwrap_or(ErrorCode::ParseXml),
            reason: error.to_string(),
        }
    }
}

/// Runs one `crypt` subcommand and returns the process exit status.
pub fn run(args: CryptArgs) -> ExitCode {
    let mut stdin = Vec::new();
    if let Err(error) = io::stdin().read_to_end(&mut stdin) {
        eprintln!("error: cannot read stdin: {error}");
        return ExitCode::FAILURE;
    }
    match execute(args, &stdin) {
        Ok(output) => match io::stdout()
            .write_all(&output)
            .and_then(|()| io::stdout().flush())
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: cannot write stdout: {error}");
                ExitCode::FAILURE
            }
        },
        Err(CryptError::Usage(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Err(CryptError::Crypt(failure)) => {
            eprintln!(
                "error {} ({}): {}",
                failure.code.code(),
                failure.code.name(),
                failure.reason
            );
            ExitCode::FAILURE
        }
    }
}

fn execute(args: CryptArgs, stdin: &[u8]) -> Result<Vec<u8>, CryptError> {
    match args {
        CryptArgs::Encrypt {
            account,
            timestamp,
            nonce,
        } => {
            let crypt = account.crypt(true)?;
            let timestamp = timestamp.unwrap_or_else(unix_now);
            let nonce = nonce.unwrap_or_else(random_nonce);
            let sealed = crypt.encrypt_and_sign(stdin, &timestamp, &nonce)?;
            let json = serde_json::json!({
                "encrypt": sealed.encrypt,
                "msg_signature": sealed.msg_signature.as_str(),
                "timestamp": timestamp,
                "nonce": nonce,
            });
            Ok(format!("{json}\n").into_bytes())
        }
        CryptArgs::Decrypt {
            account,
            signature,
            timestamp,
            nonce,
            any_appid,
        } => {
            let crypt = account.crypt(!any_appid)?;
            let input = utf8(stdin)?;
            let extracted = match envelope::extract(input) {
                // Neither an envelope nor clean base64: let the strict decoder name the bad byte
                // with its own code (-40010).
                Err(kefu_payload::Error::UnrecognizedEnvelope { .. }) => envelope::Extracted {
                    format: envelope::EnvelopeFormat::Bare,
                    encrypt: input.to_owned(),
                    msg_signature: None,
                    timestamp: None,
                    nonce: None,
                },
                other => other?,
            };
            let encrypt = extracted.encrypt.trim_ascii();
            if let (Some(signature), Some(timestamp), Some(nonce)) =
                (&signature, &timestamp, &nonce)
            {
                crypt.verify_signature(signature, timestamp, nonce, encrypt)?;
            }
            if let (Some(signature), Some(timestamp), Some(nonce)) = (
                &extracted.msg_signature,
                &extracted.timestamp,
                &extracted.nonce,
            ) {
                crypt.verify_signature(signature, timestamp, nonce, encrypt)?;
            }
            let plain = if any_appid {
                let plain = crypt.decrypt_any_receive_id(encrypt)?;
                eprintln!(
                    "receive-id: {:?}",
                    String::from_utf8_lossy(plain.receive_id())
                );
                plain
            } else {
                crypt.decrypt(encrypt)?
            };
            Ok(plain.into_message())
        }
        CryptArgs::Sign {
            token,
            timestamp,
            nonce,
        } => {
            let token = setting(
                &token.file,
                &token.token,
                "dialogue.token",
                "--token",
                "the TOKEN",
            )?;
            let encrypt = utf8(stdin)?.trim_ascii();
            Ok(format!("{}\n", sign_message(&token, &timestamp, &nonce, encrypt)).into_bytes())
        }
        CryptArgs::VerifyUrl {
            account,
            signature,
            timestamp,
            nonce,
            echostr,
        } => {
            let crypt = account.crypt(true)?;
            let echostr = query_value(&echostr);
            let plain = crypt.verify_url(&signature, &timestamp, &nonce, &echostr)?;
            Ok(plain.into_message())
        }
    }
}

fn utf8(input: &[u8]) -> Result<&str, Failure> {
    std::str::from_utf8(input).map_err(|error| Failure {
        code: ErrorCode::DecodeBase64,
        reason: format!(
            "stdin is not UTF-8 text (invalid byte at offset {})",
            error.valid_up_to()
        ),
    })
}

/// A base64 value copied from a query string: percent-decoded once if it still carries escapes
/// (base64 has no '%'), and with spaces restored to the '+' that form decoding turned them into.
fn query_value(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        let escaped = (byte == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(value) => {
                decoded.push(value);
                i += 3;
            }
            None => {
                decoded.push(if byte == b' ' { b'+' } else { byte });
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

fn unix_now() -> String {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
        .to_string()
}

fn random_nonce() -> String {
    rand::random_range(1_000_000_000u64..10_000_000_000).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_decoded_once() {
        assert_eq!(query_value("ab%2Bcd%3D"), "ab+cd=");
        assert_eq!(query_value("ab%252B"), "ab%2B");
        assert_eq!(query_value("ab cd"), "ab+cd");
        assert_eq!(query_value("ab+cd"), "ab+cd");
        assert_eq!(query_value("100%"), "100%");
        assert_eq!(query_value("%zz"), "%zz");
    }

    #[test]
    fn nonces_are_ten_digits() {
        let nonce = random_nonce();
        assert_eq!(nonce.len(), 10);
        assert!(nonce.bytes().all(|b| b.is_ascii_digit()));
    }
}
