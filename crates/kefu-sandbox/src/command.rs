//! The `sandbox` subcommand: its arguments and `run`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::faults::parse_rate;
use crate::{
    ApiAccount, ApiSettings, DEFAULT_GATEWAY_SYSTEM, DEFAULT_MAX_MESSAGES, DEFAULT_OA_ORIGINAL_ID,
    GatewaySettings, OaAccount, OaFormat, OaMode, Sandbox, SandboxConfig, YunzhenjiAccount,
    YunzhenjiSettings,
};

/// Arguments of `sandbox`.
///
/// The credentials read the same environment variables as `serve`, so that both sides of a demo
/// share them. The Official Account's own credentials (`--oa-*`) come from the command line only.
///
/// `Debug` shows the secrets as `<redacted>`.
#[derive(Args)]
#[command(after_long_help = AFTER_HELP)]
pub struct SandboxArgs {
    /// Where to listen; port 0 picks a free one (the startup line tells which).
    #[arg(long, default_value = "127.0.0.1:8090", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// The TOKEN every platform URL must carry.
    #[arg(long, env = "KEFU_DIALOGUE_TOKEN", hide_env_values = true)]
    pub token: String,
    /// The 43-character EncodingAESKey.
    #[arg(long, env = "KEFU_DIALOGUE_AES_KEY", hide_env_values = true)]
    pub aes_key: String,
    /// The bot APPID: the receive-id of every ciphertext, both ways.
    #[arg(long, env = "KEFU_DIALOGUE_BOT_APPID", hide_env_values = true)]
    pub bot_appid: String,
    /// The old name of --bot-appid, refused with a pointer to the new one.
    #[arg(long, hide = true, value_parser = renamed_appid)]
    pub appid: Option<String>,
    /// Where to push the handoff callbacks of simulated users (http:// only), such as the
    /// connector's callback endpoint.
    #[arg(long, value_name = "URL")]
    pub callback_url: Option<String>,
    /// Delay before answering each platform request, in milliseconds.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub latency_ms: u64,
    /// Fraction of platform requests answered {"success":false,"code":-1,…} (0.0 to 1.0).
    #[arg(long, default_value_t = 0.0, value_name = "RATE", value_parser = parse_rate)]
    pub system_error_rate: f64,
    /// Fraction of platform requests read and then dropped without an answer (0.0 to 1.0).
    #[arg(long, default_value_t = 0.0, value_name = "RATE", value_parser = parse_rate)]
    pub drop_rate: f64,
    /// Seed of the fault RNG: the same seed and requests give the same faults [default: random,
    /// printed at startup].
    #[arg(long)]
    pub seed: Option<u64>,
    /// How many accepted messages to keep for GET /sandbox/messages; the oldest go first.
    #[arg(long, default_value_t = DEFAULT_MAX_MESSAGES, value_name = "N")]
    pub max_messages: usize,
    /// The Official Account's server URL, where POST /sandbox/oa/users/{openid}/say pushes
    /// (http:// only).
    #[arg(long, value_name = "URL", requires_all = ["oa_token", "oa_aes_key", "oa_appid"])]
    pub oa_callback_url: Option<String>,
    /// The Official Account's own Token (not the bot's), for `signature` and `msg_signature`.
    #[arg(long, value_name = "TOKEN", requires_all = ["oa_aes_key", "oa_appid"])]
    pub oa_token: Option<String>,
    /// The Official Account's own 43-character EncodingAESKey.
    #[arg(long, value_name = "KEY", requires_all = ["oa_token", "oa_appid"])]
    pub oa_aes_key: Option<String>,
    /// The Official Account's AppID (wx…): the receive-id of its ciphertexts.
    #[arg(long, value_name = "APPID", requires_all = ["oa_token", "oa_aes_key"])]
    pub oa_appid: Option<String>,
    /// The Official Account's original ID (gh_…), the ToUserName of its pushes
    /// [default: gh_000000000000].
    #[arg(long, value_name = "ID", requires = "oa_token")]
    pub oa_original_id: Option<String>,
    /// The data format of the Official Account's pushes [default: xml].
    #[arg(long, value_enum, value_name = "FORMAT", requires = "oa_token")]
    pub oa_format: Option<OaFormat>,
    /// The encryption mode of the Official Account's pushes [default: safe]. A relay refuses
    /// plain pushes to an account unless its `wechat.<name>.mode` is `plain`.
    #[arg(long, value_enum, value_name = "MODE", requires = "oa_token")]
    pub oa_mode: Option<OaMode>,
    /// An account of api.weixin.qq.com (stable_token, custom/send, typing) as
    /// KIND:APPID:SECRET, KIND being oa or mp; repeat the flag for more accounts. Without it,
    /// oa:wx0a0a0a0a0a0a0a0a:0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a and
    /// mp:wx0b0b0b0b0b0b0b0b:0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b. An Official Account push
    /// (--oa-appid) opens the send window of the account with the same AppID.
    #[arg(long = "api-account", value_name = "KIND:APPID:SECRET", value_parser = ACCOUNT_PARSER)]
    pub api_accounts: Vec<ApiAccount>,
    /// How long an access token lives; it is renewed in its last 5 minutes (or last half, if
    /// shorter), with the old one working until it expires.
    #[arg(long, default_value_t = 7200, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub token_lifetime_secs: u64,
    /// How long a user's message opens the send window of custom/send (45015 after).
    #[arg(long, default_value_t = 48 * 3600, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub send_window_secs: u64,
    /// How many custom/send messages one user message allows (45047 after).
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub quota_per_message: u32,
    /// yunzhenji's and the company gateway's flags, boxed so that the subcommands stay small.
    #[command(flatten)]
    pub vendors: Box<VendorArgs>,
}

impl std::fmt::Debug for SandboxArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |value: &Option<String>| value.as_ref().map(|_| "<redacted>");
        f.debug_struct("SandboxArgs")
            .field("listen", &self.listen)
            .field("token", &"<redacted>")
            .field("aes_key", &"<redacted>")
            .field("bot_appid", &self.bot_appid)
            .field("callback_url", &redacted(&self.callback_url))
            .field("latency_ms", &self.latency_ms)
            .field("system_error_rate", &self.system_error_rate)
            .field("drop_rate", &self.drop_rate)
            .field("seed", &self.seed)
            .field("max_messages", &self.max_messages)
            .field("oa_callback_url", &redacted(&self.oa_callback_url))
            .field("oa_token", &redacted(&self.oa_token))
            .field("oa_aes_key", &redacted(&self.oa_aes_key))
            .field("oa_appid", &self.oa_appid)
            .field("oa_original_id", &self.oa_original_id)
            .field("oa_format", &self.oa_format)
            .field("oa_mode", &self.oa_mode)
            .field("api_accounts", &self.api_accounts)
            .field("token_lifetime_secs", &self.token_lifetime_secs)
            .field("send_window_secs", &self.send_window_secs)
            .field("quota_per_message", &self.quota_per_message)
            .field("vendors", &self.vendors)
            .finish()
    }
}

/// The vendors' flags of `sandbox`: yunzhenji's accounts and pushes, and the company gateway.
///
/// `Debug` shows the access tokens and the callback URL as `<redacted>`.
#[derive(Args)]
pub struct VendorArgs {
    /// A yunzhenji account (POST /wechat/sendMessage) as APP_ID:ACCESS_TOKEN:WXID; repeat the
    /// flag for more. Without it, yzj-sandbox:yzj-sandbox-token:1688850000000001.
    #[arg(long = "yzj-account", value_name = "APP_ID:ACCESS_TOKEN:WXID", value_parser = YZJ_ACCOUNT_PARSER)]
    pub yzj_accounts: Vec<YunzhenjiAccount>,
    /// Where yunzhenji's chatMsg and chatMsgSendFail pushes go (http:// only), such as the
    /// connector's /v1/callbacks/yunzhenji/{callback_secret}.
    #[arg(long, value_name = "URL")]
    pub yzj_callback_url: Option<String>,
    /// How long after a sendMessage call its pushes start, in milliseconds.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub yzj_push_delay_ms: u64,
    /// Fraction of accepted yunzhenji messages that fail: a chatMsgSendFail follows their
    /// chatMsg (0.0 to 1.0).
    #[arg(long, default_value_t = 0.0, value_name = "RATE", value_parser = parse_rate)]
    pub yzj_failure_rate: f64,
    /// The `system` header the company gateway expects.
    #[arg(long, default_value = DEFAULT_GATEWAY_SYSTEM, value_name = "NAME")]
    pub gateway_system: String,
    /// The api.weixin.qq.com account the company gateway sends through: its users (those who
    /// wrote) are the gateway's known openIds [default: the first oa account].
    #[arg(long, value_name = "APPID")]
    pub gateway_appid: Option<String>,
}

impl std::fmt::Debug for VendorArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VendorArgs")
            .field("yzj_accounts", &self.yzj_accounts)
            .field(
                "yzj_callback_url",
                &self.yzj_callback_url.as_ref().map(|_| "<redacted>"),
            )
            .field("yzj_push_delay_ms", &self.yzj_push_delay_ms)
            .field("yzj_failure_rate", &self.yzj_failure_rate)
            .field("gateway_system", &self.gateway_system)
            .field("gateway_appid", &self.gateway_appid)
            .finish()
    }
}

impl VendorArgs {
    /// The yunzhenji accounts and pushes; the default account when none is given.
    fn yunzhenji_settings(&self) -> YunzhenjiSettings {
        let defaults = YunzhenjiSettings::default();
        YunzhenjiSettings {
            accounts: if self.yzj_accounts.is_empty() {
                defaults.accounts
            } else {
                self.yzj_accounts.clone()
            },
            callback_url: self.yzj_callback_url.clone(),
            push_delay: Duration::from_millis(self.yzj_push_delay_ms),
            failure_rate: self.yzj_failure_rate,
        }
    }
}

const AFTER_HELP: &str = "\
Routes:
  POST /openapi/sendmsg/{TOKEN}            the platform's sendmsg
  POST /openapi/kefustate/get/{TOKEN}      the platform's kefustate/get
  POST /openapi/kefustate/change/{TOKEN}   the platform's kefustate/change
  GET  /sandbox/messages[?openid=…]        accepted messages, decrypted, in order
  GET  /sandbox/users/{openid}             a user's handoff state
  POST /sandbox/users/{openid}/say         play the user: {\"text\": \"我要转人工\"} → callback
  POST /sandbox/users/{openid}/ask-for-person   the handoff skill: needperson → callback
  POST /sandbox/users/{openid}/rate        {\"assessment\": 1..=5}, after a waiterQualityEvaluate
  POST /sandbox/users/{openid}/enter       event=userEnter → callback
  POST /sandbox/users/{openid}/leave       event=userQuit → callback
  POST /sandbox/users/{openid}/redeliver   the last callback again ({\"reencrypt\": true}: new ciphertext)
  POST /sandbox/oa/users/{openid}/say      an Official Account text push to --oa-callback-url
  POST /sandbox/oa/users/{openid}/redeliver   the last OA push again (or re-encrypted)
  POST /cgi-bin/stable_token               api.weixin.qq.com's stable access token
  POST /cgi-bin/message/custom/send?access_token=…            custom/send, OA and MP
  POST /cgi-bin/message/custom/typing?access_token=…          typing, OA
  POST /cgi-bin/message/custom/business/typing?access_token=… typing, MP
  GET  /sandbox/accounts/{appid}           token fetches, force refreshes, accepted requests
  GET  /sandbox/accounts/{appid}/messages[?openid=…]   accepted custom/send and typing bodies
  POST /sandbox/accounts/{appid}/supersede the account's tokens answer 40001 from now on
  POST /sandbox/accounts/{appid}/inject    body with errcode N and count C: the next C
                                           custom/send and typing calls answer N (45009, …)
  GET  /sandbox/accounts/{appid}/users/{openid}        the user's send window, quota, typing
  POST /sandbox/accounts/{appid}/users/{openid}/write  the user writes: window open, quota reset
  POST /wechat/sendMessage                 yunzhenji: up to 5 messages from a WeCom account
  GET  /sandbox/yunzhenji                  its callback (without path), delay, failure rate
  POST /sandbox/yunzhenji/settings         {\"callback_url\", \"push_delay_ms\", \"failure_rate\"}
  POST /sandbox/yunzhenji/partial          {\"accept\": N}: the next call accepts its first N only
  GET  /sandbox/yunzhenji/messages[?target_wxid=…]   accepted messages with their svrids
  GET  /sandbox/yunzhenji/pushes           the chatMsg / chatMsgSendFail pushes and their fate
  POST /sandbox/yunzhenji/customers/{wxid}/say   {\"text\": …}: a customer's chatMsg, pushed now
  POST /wisdom-api/weixin/v1/sendCustomerMessage  the company gateway (header system: NEW_MEMBER)
  GET  /sandbox/gateway                    its system header, account, pending injection
  POST /sandbox/gateway/settings           {\"errcode_as_string\": true}
  POST /sandbox/gateway/inject             {\"errcode\": N, \"count\": C} or {\"code\": M, \"count\": C}
  GET  /sandbox/gateway/messages[?openid=…]   the gateway's accepted messages

On startup one line goes to stdout:
  sandbox listening addr=127.0.0.1:8090 base_url=http://127.0.0.1:8090/openapi api_base_url=http://127.0.0.1:8090 seed=…
Point the connector's dialogue.base_url at base_url, and a WeChat account's api_base_url,
a yunzhenji account's base_url and a gateway's base_url at api_base_url. The default
yunzhenji account is yzj-sandbox / yzj-sandbox-token / wxid 1688850000000001; the gateway's
openIds are the users of its api.weixin.qq.com account (the first oa one) who wrote.
SIGINT or SIGTERM stops the sandbox.";

impl SandboxArgs {
    /// The in-process configuration these arguments describe.
    pub fn to_config(&self) -> SandboxConfig {
        SandboxConfig {
            listen: self.listen,
            token: self.token.clone(),
            aes_key: self.aes_key.clone(),
            appid: self.bot_appid.clone(),
            callback_url: self.callback_url.clone(),
            latency: Duration::from_millis(self.latency_ms),
            system_error_rate: self.system_error_rate,
            drop_rate: self.drop_rate,
            seed: self.seed,
            max_messages: self.max_messages,
            oa: self.oa_account(),
            api: self.api_settings(),
            yunzhenji: self.vendors.yunzhenji_settings(),
            gateway: GatewaySettings {
                system: self.vendors.gateway_system.clone(),
                appid: self.vendors.gateway_appid.clone(),
            },
            limits: kefu_http_server::ServerLimits::default(),
        }
    }

    /// The api.weixin.qq.com accounts and clocks; the default accounts when none is given.
    fn api_settings(&self) -> ApiSettings {
        let defaults = ApiSettings::default();
        ApiSettings {
            accounts: if self.api_accounts.is_empty() {
                defaults.accounts
            } else {
                self.api_accounts.clone()
            },
            token_lifetime: Duration::from_secs(self.token_lifetime_secs),
            send_window: Duration::from_secs(self.send_window_secs),
            quota_per_message: self.quota_per_message,
            ..defaults
        }
    }

    /// The Official Account, when its credentials are given (clap requires all three together).
    fn oa_account(&self) -> Option<OaAccount> {
        let (Some(token), Some(aes_key), Some(appid)) =
            (&self.oa_token, &self.oa_aes_key, &self.oa_appid)
        else {
            return None;
        };
        let mut account = OaAccount::new(token, aes_key, appid);
        account.original_id = self
            .oa_original_id
            .clone()
            .unwrap_or_else(|| DEFAULT_OA_ORIGINAL_ID.to_owned());
        account.callback_url = self.oa_callback_url.clone();
        account.format = self.oa_format.unwrap_or_default();
        account.mode = self.oa_mode.unwrap_or_default();
        Some(account)
    }
}

/// Parses an account flag without echoing it: clap's own errors quote the value, and this one
/// holds a secret.
#[derive(Debug, Clone, Copy)]
struct SecretParser<T: Clone + Send + Sync + 'static> {
    flag: &'static str,
    parse: fn(&str) -> Result<T, String>,
}

impl<T: Clone + Send + Sync + 'static> clap::builder::TypedValueParser for SecretParser<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<T, clap::Error> {
        let refuse = |reason: &str| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid value for {}: {reason}\n", self.flag),
            )
            .with_cmd(cmd)
        };
        let text = value.to_str().ok_or_else(|| refuse("not UTF-8"))?;
        (self.parse)(text).map_err(|reason| refuse(&reason))
    }
}

/// The parser of `--api-account`.
const ACCOUNT_PARSER: SecretParser<ApiAccount> = SecretParser {
    flag: "--api-account",
    parse: ApiAccount::parse,
};

/// The parser of `--yzj-account`.
const YZJ_ACCOUNT_PARSER: SecretParser<YunzhenjiAccount> = SecretParser {
    flag: "--yzj-account",
    parse: YunzhenjiAccount::parse,
};

/// `--appid` means the Official Account or Mini Program AppID in kefu-connector's commands; the
/// receive-id flag is `--bot-appid`. Refusing the old name by name beats clap's guess at a similar
/// flag (`--oa-appid`, which is another account's).
fn renamed_appid(_: &str) -> Result<String, String> {
    Err("--appid is now --bot-appid (the bot APPID, the receive-id); --appid means the Official Account or Mini Program AppID, which this command does not take".into())
}

/// Runs the sandbox until SIGINT or SIGTERM.
///
/// Prints `sandbox listening addr=<addr> base_url=<url> api_base_url=<url> seed=<n>` on stdout
/// once listening.
/// Exits 2 on an invalid setting, 1 when it cannot listen.
pub fn run(args: SandboxArgs) -> ExitCode {
    kefu_http_server::runtime::init_logging(false);
    kefu_http_server::runtime::block_on(async {
        let stopped = match kefu_http_server::runtime::stop_signals() {
            Ok(stopped) => stopped,
            Err(error) => {
                eprintln!("error: cannot listen for SIGINT and SIGTERM: {error}");
                return ExitCode::FAILURE;
            }
        };
        let sandbox = match Sandbox::start(args.to_config()).await {
            Ok(sandbox) => sandbox,
            Err(error) => {
                eprintln!("error: {error}");
                return if error.is_config() {
                    ExitCode::from(2)
                } else {
                    ExitCode::FAILURE
                };
            }
        };
        kefu_http_server::runtime::announce(&format!(
            "sandbox listening addr={} base_url={} api_base_url={} seed={}",
            sandbox.addr(),
            sandbox.base_url(),
            sandbox.api_base_url(),
            sandbox.seed()
        ));
        stopped.await;
        tracing::info!("stopping the sandbox");
        sandbox.stop().await;
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: SandboxArgs,
    }

    const BASE: [&str; 7] = [
        "sandbox",
        "--token",
        "T",
        "--aes-key",
        "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
        "--bot-appid",
        "A",
    ];

    fn parse(extra: &[&str]) -> Result<SandboxArgs, clap::Error> {
        let mut argv = BASE.to_vec();
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).map(|cli| cli.args)
    }

    /// The old receive-id flag is refused by name, pointing at --bot-appid, rather than with
    /// clap's guess at a similar flag (--oa-appid, which is another account's).
    #[test]
    fn the_old_appid_flag_points_at_bot_appid() {
        let error = parse(&["--appid", "A"]).unwrap_err().to_string();
        assert!(error.contains("--appid is now --bot-appid"), "{error}");
        assert!(!error.contains("--oa-appid"), "{error}");
    }

    #[test]
    fn defaults_and_faults() {
        let args = parse(&[]).unwrap();
        let config = args.to_config();
        assert_eq!(config.listen, "127.0.0.1:8090".parse().unwrap());
        assert_eq!((config.drop_rate, config.system_error_rate), (0.0, 0.0));
        assert_eq!(config.seed, None);
        let args = parse(&[
            "--listen",
            "127.0.0.1:0",
            "--latency-ms",
            "25",
            "--drop-rate",
            "0.5",
            "--system-error-rate",
            "1",
            "--seed",
            "7",
            "--callback-url",
            "http://127.0.0.1:9/cb",
        ])
        .unwrap();
        let config = args.to_config();
        assert_eq!(config.latency, Duration::from_millis(25));
        assert_eq!((config.drop_rate, config.system_error_rate), (0.5, 1.0));
        assert_eq!(config.seed, Some(7));
        assert_eq!(
            config.callback_url.as_deref(),
            Some("http://127.0.0.1:9/cb")
        );
    }

    #[test]
    fn official_account_flags_go_together() {
        assert!(parse(&[]).unwrap().to_config().oa.is_none());
        let args = parse(&[
            "--oa-token",
            "OaSecretToken",
            "--oa-aes-key",
            "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR",
            "--oa-appid",
            "wx2c2769f8efd9abc2",
            "--oa-callback-url",
            "http://127.0.0.1:9/wx",
            "--oa-format",
            "json",
            "--oa-mode",
            "compatible",
        ])
        .unwrap();
        let debug = format!("{args:?}");
        assert!(
            !debug.contains("OaSecretToken")
                && !debug.contains("kWxPEV2U")
                && !debug.contains("127.0.0.1:9"),
            "{debug}"
        );
        let oa = args.to_config().oa.unwrap();
        assert_eq!(oa.appid, "wx2c2769f8efd9abc2");
        assert_eq!(oa.original_id, DEFAULT_OA_ORIGINAL_ID);
        assert_eq!((oa.format, oa.mode), (OaFormat::Json, OaMode::Compatible));
        assert_eq!(oa.callback_url.as_deref(), Some("http://127.0.0.1:9/wx"));
        let oa = parse(&["--oa-token", "T", "--oa-aes-key", "K", "--oa-appid", "wx1"])
            .unwrap()
            .to_config()
            .oa
            .unwrap();
        assert_eq!(
            (oa.format, oa.mode, oa.callback_url),
            (OaFormat::Xml, OaMode::Safe, None)
        );
        for partial in [
            &["--oa-callback-url", "http://127.0.0.1:9/wx"][..],
            &["--oa-token", "T"],
            &["--oa-token", "T", "--oa-appid", "wx1"],
            &["--oa-mode", "plain"],
        ] {
            let err = parse(partial).unwrap_err().to_string();
            assert!(err.contains("--oa-"), "{partial:?}: {err}");
        }
        let err = parse(&[
            "--oa-token",
            "T",
            "--oa-aes-key",
            "K",
            "--oa-appid",
            "wx1",
            "--oa-mode",
            "secure",
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("safe") && err.contains("compatible"), "{err}");
    }

    #[test]
    fn api_accounts_and_clocks() {
        let api = parse(&[]).unwrap().to_config().api;
        assert_eq!(api, ApiSettings::default());
        let args = parse(&[
            "--api-account",
            "mp:wxMine:MineSecret",
            "--api-account",
            "oa:wxOther:OtherSecret",
            "--token-lifetime-secs",
            "60",
            "--send-window-secs",
            "5",
            "--quota-per-message",
            "20",
        ])
        .unwrap();
        let debug = format!("{args:?}");
        assert!(
            !debug.contains("MineSecret") && debug.contains("wxMine"),
            "{debug}"
        );
        let api = args.to_config().api;
        let accounts: Vec<(&str, crate::AccountKind)> = api
            .accounts
            .iter()
            .map(|a| (a.appid.as_str(), a.kind))
            .collect();
        assert_eq!(
            accounts,
            [
                ("wxMine", crate::AccountKind::Mp),
                ("wxOther", crate::AccountKind::Oa)
            ]
        );
        assert_eq!(api.token_lifetime, Duration::from_secs(60));
        assert_eq!(api.send_window, Duration::from_secs(5));
        assert_eq!(api.quota_per_message, 20);
        let error = parse(&["--api-account", "xx:wx:s"])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("--api-account") && error.contains("unknown kind"),
            "{error}"
        );
        let error = parse(&["--api-account", "oa:wx:Sec ret"])
            .unwrap_err()
            .to_string();
        assert!(!error.contains("Sec ret"), "{error}");
        assert!(parse(&["--token-lifetime-secs", "0"]).is_err());
    }

    #[test]
    fn vendor_flags() {
        let config = parse(&[]).unwrap().to_config();
        assert_eq!(config.yunzhenji, YunzhenjiSettings::default());
        assert_eq!(config.gateway, GatewaySettings::default());
        let args = parse(&[
            "--yzj-account",
            "yzj-a:YzjSecretA:1688",
            "--yzj-account",
            "yzj-b:YzjSecretB:1689",
            "--yzj-callback-url",
            "http://127.0.0.1:9/v1/callbacks/yunzhenji/hidden",
            "--yzj-push-delay-ms",
            "250",
            "--yzj-failure-rate",
            "0.5",
            "--gateway-system",
            "MY_SYSTEM",
            "--gateway-appid",
            "wxGateway",
        ])
        .unwrap();
        let debug = format!("{args:?}");
        assert!(
            !debug.contains("YzjSecret") && !debug.contains("hidden") && debug.contains("yzj-a"),
            "{debug}"
        );
        let config = args.to_config();
        let apps: Vec<&str> = config
            .yunzhenji
            .accounts
            .iter()
            .map(|a| a.app_id.as_str())
            .collect();
        assert_eq!(apps, ["yzj-a", "yzj-b"]);
        assert_eq!(config.yunzhenji.push_delay, Duration::from_millis(250));
        assert_eq!(config.yunzhenji.failure_rate, 0.5);
        assert_eq!(config.gateway.system, "MY_SYSTEM");
        assert_eq!(config.gateway.appid.as_deref(), Some("wxGateway"));
        let error = parse(&["--yzj-account", "yzj:Sec ret:1688"])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("--yzj-account") && !error.contains("Sec ret"),
            "{error}"
        );
        assert!(parse(&["--yzj-failure-rate", "2"]).is_err());
    }

    #[test]
    fn rates_out_of_range_are_clap_errors() {
        let err = parse(&["--drop-rate", "1.5"]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("--drop-rate"), "{text}");
        assert!(text.contains("1.5 is outside 0.0..=1.0"), "{text}");
        let text = parse(&["--system-error-rate", "lots"])
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("--system-error-rate") && text.contains("not a number"),
            "{text}"
        );
    }
}
