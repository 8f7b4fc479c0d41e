//! The desk API's `POST /v1/messages` body: [`kefu_connector::api::parse_message`] and the
//! Dialogue provider's composition, the pure parse and validation that run before anything is
//! stored.
//!
//! The input is the raw body, judged against two accounts: one with a default `dialogue.appid`
//! and one without. Asserted:
//!
//! * a rejected body carries status 400 or 422 and a message; a body that is valid JSON is never
//!   400, and a 400 says that the body is not valid JSON;
//! * an accepted body is a JSON object, and its job is a `sendmsg` for the body's `openid` whose payload
//!   `SendMsg::from_xml` reads back with the body's fields: `openid`, `channel`, `appid` (or the
//!   default: the account's appid, the TOKEN on channel 7), `msg` (as `Msg::from_wire` of its
//!   wire form), `event`, `kefuname`, `kefuavatar` and `ans_node_name` (empty meaning absent);
//!   and the payload is exactly what the parsed message writes.
#![no_main]

use std::sync::{Arc, OnceLock};

use kefu_client::Operation;
use kefu_client::dialogue::DialogueProvider;
use kefu_connector::api::{ApiError, parse_message};
use kefu_connector::config::Config;
use kefu_connector::providers::Providers;
use kefu_connector::store::{DIALOGUE_ACCOUNT, NewJob};
use kefu_fuzz::{BOT_APPID, SAMPLE_KEY, must};
use kefu_payload::{Channel, Event, Msg, SendMsg};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const TOKEN: &str = "TOKEN0123456789";

/// One Dialogue account, as the relay registers it.
struct Account {
    providers: Providers,
    dialogue: Arc<DialogueProvider>,
}

fn account(default_appid: &str) -> Account {
    let env = [
        ("KEFU_SERVER_API_KEY", "desk-key-0123456789"),
        ("KEFU_DIALOGUE_TOKEN", TOKEN),
        ("KEFU_DIALOGUE_AES_KEY", SAMPLE_KEY),
        ("KEFU_DIALOGUE_BOT_APPID", BOT_APPID),
        ("KEFU_DIALOGUE_APPID", default_appid),
    ];
    let config = must(Config::from_settings(&env));
    let dialogue = Arc::new(must(kefu_connector::serve::dialogue_provider(&config)));
    let mut providers = Providers::new();
    providers.register(DIALOGUE_ACCOUNT, Arc::clone(&dialogue) as Arc<dyn kefu_client::kefu_core::Provider>);
    Account { providers, dialogue }
}

/// What the API makes of a body, for a recipient without a session.
fn jobs(data: &[u8], account: &Account) -> Result<Vec<NewJob>, ApiError> {
    let message = parse_message(data)?;
    message.compose(message.provider(&account.providers)?.as_ref(), None)
}

fn accounts() -> &'static [Account; 2] {
    static ACCOUNTS: OnceLock<[Account; 2]> = OnceLock::new();
    ACCOUNTS.get_or_init(|| [account("wxDEFAULT00000000"), account("")])
}

fn field<'a>(body: &'a Value, name: &str) -> Option<&'a Value> {
    body.get(name).filter(|value| !value.is_null())
}

fn text<'a>(body: &'a Value, name: &str) -> Option<&'a str> {
    field(body, name).map(|value| match value.as_str() {
        Some(text) => text,
        None => panic!("accepted a non-string {name}: {value}"),
    })
}

fn non_empty(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.is_empty())
}

fuzz_target!(|data: &[u8]| {
    let is_json = serde_json::from_slice::<Value>(data).is_ok();
    for account in accounts() {
        match jobs(data, account) {
            Err(error) => {
                let status = error.status().as_u16();
                assert!(status == 400 || status == 422, "{error:?}");
                assert!(!error.message().is_empty(), "{error:?}");
                if is_json {
                    assert_eq!(status, 422, "valid JSON answered 400: {error:?}");
                }
                if status == 400 {
                    assert!(
                        error.message().starts_with("the body is not valid JSON"),
                        "{error:?}"
                    );
                }
            }
            Ok(jobs) => {
                assert_eq!(jobs.len(), 1, "{jobs:?}");
                for job in jobs {
                    accepted(data, &account.dialogue, job);
                }
            }
        }
    }
});

fn accepted(data: &[u8], dialogue: &DialogueProvider, job: NewJob) {
    let body: Value = must(serde_json::from_slice(data));
    assert!(
        body.is_object(),
        "accepted a body that is not an object: {body}"
    );
    assert_eq!(job.operation, Operation::SendMsg.name(), "{job:?}");
    assert_eq!(job.account, DIALOGUE_ACCOUNT);
    let payload = must(std::str::from_utf8(&job.payload));
    let send = must(SendMsg::from_xml(payload));
    assert_eq!(must(send.to_xml()), payload);

    let openid = text(&body, "openid").unwrap_or_default();
    assert_eq!(job.recipient, openid);
    assert_eq!(send.openid(), openid);

    let channel = field(&body, "channel")
        .and_then(Value::as_u64)
        .and_then(|code| u8::try_from(code).ok())
        .and_then(Channel::from_code);
    assert_eq!(Some(send.channel()), channel, "{body}");

    let appid = dialogue.appid_for(text(&body, "appid").map(str::to_owned), None, send.channel());
    assert_eq!(send.appid(), non_empty(appid.as_deref()));

    let msg: Msg = must(serde_json::from_value(
        field(&body, "msg").cloned().unwrap_or_default(),
    ));
    assert_eq!(send.msg(), &Msg::from_wire(&msg.to_wire()));

    let event = text(&body, "event").map(|name| must(name.parse::<Event>()));
    assert_eq!(send.event(), event);
    assert_eq!(send.kefuname(), non_empty(text(&body, "kefuname")));
    assert_eq!(send.kefuavatar(), non_empty(text(&body, "kefuavatar")));
    assert_eq!(
        send.ans_node_name(),
        non_empty(text(&body, "ans_node_name"))
    );
}
