//! `kefu-connector send`: one message, directly, for scripts. No outbox: the message is sent now,
//! retried only where that cannot duplicate it, and the outcome is the exit status.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use kefu_client::Operation;
use kefu_payload::{Channel, Event, Msg};

use crate::config::Config;
use kefu_client::dialogue::Outgoing;

/// Arguments of `send`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("content").required(true).args(["text", "json"])))]
pub struct SendArgs {
    /// The TOML configuration file (the same one `serve` reads, [default: ./kefu.toml if it
    /// exists]; only the `dialogue` settings matter here). Environment variables override it.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// The user's openid (the callback's `userid`).
    #[arg(long)]
    pub openid: String,
    /// The channel the user came from: 0, 1, 5, 6, 7 or 9 (echo the callback's `channel`).
    #[arg(long, value_parser = parse_channel)]
    pub channel: Channel,
    /// The Official Account or Mini Program AppID [default: dialogue.appid; the TOKEN on channel 7].
    #[arg(long)]
    pub appid: Option<String>,
    /// A text message (or --json).
    #[arg(long)]
    pub text: Option<String>,
    /// A file holding rich content as JSON (or --text): one `msg` object of the desk API, e.g.
    /// {"news":{"articles":[…]}}, {"image":{"media_id":…}} (protocols.md §4.5).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// A handoff event: waiterEnter, waiterSwitch, waiterQuit or waiterQualityEvaluate.
    #[arg(long)]
    pub event: Option<Event>,
    /// The agent's nickname shown to the user.
    #[arg(long)]
    pub kefuname: Option<String>,
    /// The agent's avatar URL.
    #[arg(long)]
    pub kefuavatar: Option<String>,
}

fn parse_channel(text: &str) -> Result<Channel, String> {
    text.parse::<u8>()
        .ok()
        .and_then(Channel::from_code)
        .ok_or_else(|| format!("{text:?} is not a channel; use 0, 1, 2, 3, 4, 5, 6, 7 or 9"))
}

/// Runs `send`: exit status 0 when the platform accepted the message, 2 on a configuration
/// error, 1 otherwise.
pub fn run(args: SendArgs) -> ExitCode {
    let config = match Config::load_cli(args.config.as_deref(), false) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    match send(args, &config) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn send(args: SendArgs, config: &Config) -> Result<String, String> {
    let msg = match (&args.text, &args.json) {
        (Some(text), _) => Msg::text(text.clone()),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            serde_json::from_str(&text).map_err(|e| {
                format!(
                    "{} does not hold a message (a JSON string or a news, image, miniprogrampage or multimsg object): {e}",
                    path.display()
                )
            })?
        }
        (None, None) => return Err("give --text or --json".into()),
    };
    let dialogue = crate::serve::dialogue_provider(config).map_err(|e| e.to_string())?;
    let appid = dialogue.appid_for(args.appid.clone(), None, args.channel);
    let xml = Outgoing {
        openid: &args.openid,
        channel: args.channel,
        appid,
        msg,
        event: args.event,
        kefuname: args.kefuname,
        kefuavatar: args.kefuavatar,
        ans_node_name: None,
    }
    .to_xml()
    .map_err(|e| e.to_string())?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
        let client = crate::serve::platform_client(config).map_err(|e| e.to_string())?;
        let policy = crate::serve::retry_policy(config);
        match kefu_client::retry(&policy, Operation::SendMsg, || {
            client.call_xml(Operation::SendMsg, &xml)
        })
        .await
        {
            Ok(reply) => Ok(serde_json::json!({
                "status": "delivered",
                "rid": reply.rid(),
            })
            .to_string()),
            Err(error) if error.is_ambiguous() => Err(format!(
                "{error}\nThe message may have reached the user; check before sending it again."
            )),
            Err(error) => Err(error.to_string()),
        }
    })
}
