//! `kefu-connector crypt`: WXBizMsgCrypt by hand.
//!
//! Scripts call these subcommands, so their interface is fixed: JSON or raw bytes on stdout, one
//! `error <code> (<name>): <reason>` line on stderr and exit status 1 on failure, exit status 2 on a
//! usage error.

use std::io::{self, Read as _, Write as _};
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
    /// Example: printf '<xml>…</xml>' | kefu-connector crypt encrypt --token T --aes-key K --appid A
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
        /// Accept any trailing receive-id instead of --appid, and report the one found on stderr.
        #[arg(long)]
        any_appid: bool,
    },
    /// Print the msg_signature of the ciphertext read from stdin: SHA1 over the sorted token,
    /// timestamp, nonce and ciphertext.
    Sign {
        /// The account's Token.
        #[arg(long, env = "KEFU_TOKEN", hide_env_values = true)]
        token: String,
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

/// The three credentials of an account, from the flags or the environment.
#[derive(Debug, Args)]
pub struct Account {
    /// The Token from the console.
    #[arg(long, env = "KEFU_TOKEN", hide_env_values = true)]
    token: String,
    /// The 43-character EncodingAESKey from the console.
    #[arg(long, env = "KEFU_AES_KEY", hide_env_values = true)]
    aes_key: String,
    /// The receive-id: the bot APPID for the Dialogue platform, the AppID for an Official Account
    /// or Mini Program, the CorpID for WeCom.
    #[arg(long, env = "KEFU_APPID")]
    appid: String,
}

impl Account {
    fn crypt(&self) -> Result<MsgCrypt, Failure> {
        Ok(MsgCrypt::new(
            self.token.as_str(),
            &self.aes_key,
            self.appid.as_bytes(),
        )?)
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
        Err(failure) => {
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

fn execute(args: CryptArgs, stdin: &[u8]) -> Result<Vec<u8>, Failure> {
    match args {
        CryptArgs::Encrypt {
            account,
            timestamp,
            nonce,
        } => {
            let crypt = account.crypt()?;
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
            let crypt = account.crypt()?;
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
            let crypt = account.crypt()?;
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
