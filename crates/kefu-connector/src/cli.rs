//! The command-line interface: every subcommand and its arguments, with the help text users see.

use clap::{Parser, Subcommand};

use crate::bench::BenchArgs;
use crate::console::password::ConsoleArgs;
use crate::crypt::CryptArgs;
use crate::demo::DemoArgs;
use crate::migrate::MigrateArgs;
use crate::sandbox::SandboxArgs;
use crate::send::SendArgs;
use crate::serve::ServeArgs;
use crate::token::TokenArgs;

/// A connector between WeChat's Dialogue Open Platform (微信对话开放平台) and your agent desk.
///
/// It encrypts and decrypts WXBizMsgCrypt payloads strictly (32-byte PKCS#7 padding, receive-id
/// check, constant-time signature comparison) and speaks the platform's third-party customer
/// service API.
#[derive(Debug, Parser)]
#[command(
    name = "kefu-connector",
    version,
    propagate_version = true,
    after_help = EXIT_STATUS
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The exit statuses of every subcommand, shown at the end of `--help`.
pub const EXIT_STATUS: &str = "\
Exit status (every subcommand):
  0  success
  1  failure at run time: the platform refused or could not be reached, a port is in use, a
     payload did not decrypt, the demo or the bench found a fault, the store failed (and for
     `migrate --check`, a migration is due)
  2  usage or configuration error: a wrong or missing flag, an invalid or missing setting, a
     missing directory, a store schema newer than this build; the message on stderr names it

Configuration: serve, send, crypt and migrate read --config, else ./kefu.toml if it exists; KEFU_*
environment variables override the file. Start with kefu.example.toml (see `serve --help`).";

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Encrypt, decrypt, sign and verify WXBizMsgCrypt payloads by hand, for the engineer chasing
    /// a -40001.
    #[command(subcommand)]
    Crypt(CryptArgs),
    /// Run the relay: the desk-facing HTTP API, the durable outbox and delivery to the platform.
    ///
    /// The desk posts messages to /v1/messages and handoff steps to /v1/sessions/{openid}/…;
    /// each is acknowledged only once durably stored, then delivered in order per user.
    Serve(ServeArgs),
    /// Bring the store's schema to this build's version: the PostgreSQL database of `[store] url`,
    /// else the SQLite file of outbox.path. `--check` changes nothing and exits 1 if that is due.
    Migrate(MigrateArgs),
    /// Send one message to a user now, without the outbox, for scripts.
    Send(SendArgs),
    /// Emulate the platforms on loopback, for demos and offline tests: the Dialogue platform's
    /// sendmsg and kefustate; api.weixin.qq.com's stable_token, custom/send and typing for
    /// Official Accounts and Mini Programs; the yunzhenji vendor's wechat/sendMessage, with its
    /// chatMsg and chatMsgSendFail pushes to a callback URL; and the company gateway's
    /// sendCustomerMessage, which wraps custom/send's answers. Each with its checks and error
    /// bodies; simulated users and customers that trigger callbacks; and fault injection
    /// (latency, -1 system errors, dropped connections). The same as the kefu-sandbox binary.
    Sandbox(SandboxArgs),
    /// Show the whole handoff on loopback, with no setup: the sandbox and the relay start
    /// in-process, a built-in desk takes a session, answers with a text, a news card and a
    /// mini-program card, asks for a rating and leaves; then the messages the sandbox received
    /// are printed, decrypted. Then a user writes to an Official Account through the same relay:
    /// the desk shows typing, answers with a text, an image and a menu through custom/send, and
    /// its sixth message fails with quota_exhausted; the JSON bodies the sandbox received are
    /// printed.
    Demo(DemoArgs),
    /// Measure the relay under load on loopback: many users post to /v1/messages of an
    /// in-process relay (durable outbox) that delivers to an in-process sandbox; reports accepted
    /// and delivered messages/s, acknowledgement and end-to-end latency, peak memory, and the
    /// direct-client ceiling; then the same through an Official Account's custom/send
    /// (--provider chooses dialogue, oa or all). Exits 1 if any acknowledged message was lost or
    /// duplicated. With
    /// --inbound: sandbox users push handoff callbacks instead, and it reports how fast the relay
    /// acknowledges them while the desk's webhook is slow.
    Bench(BenchArgs),
    /// Access tokens of the `[wechat.<name>]` accounts: `token refresh --account NAME --force`
    /// forces a new one (for a leaked token; the platform allows 20 a day, at least 30 s apart).
    #[command(subcommand)]
    Token(TokenArgs),
    /// The operator console that `serve` shows at /console: `console hash-password` makes the
    /// argon2id hash of its password for `[console] password_hash`.
    #[command(subcommand)]
    Console(ConsoleArgs),
}
