//! The Dialogue platform as a [`Provider`]: the desk's message becomes the `sendmsg` XML, and
//! a stored job is sent with [`Client::call_xml`] and classified with [`classify`].

use kefu_core::{
    Attempt, BoxFuture, Class, ComposeRequest, Composed, Invalid, Job, Provider, Reason,
};
use kefu_payload::{Channel, Event, KefuState, KefuStateChange, Msg, SendMsg};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::client::Client;
use crate::error::Operation;
use crate::retry::classify;

/// One `sendmsg` as the desk describes it, before validation.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    /// The user.
    pub openid: &'a str,
    /// The user's channel.
    pub channel: Channel,
    /// The OA/MP AppID, already defaulted (see [`DialogueProvider::appid_for`]).
    pub appid: Option<String>,
    /// The content.
    pub msg: Msg,
    /// The handoff event, if any.
    pub event: Option<Event>,
    /// The agent's nickname.
    pub kefuname: Option<String>,
    /// The agent's avatar URL.
    pub kefuavatar: Option<String>,
    /// The category or skill name.
    pub ans_node_name: Option<String>,
}

impl Outgoing<'_> {
    /// Validates the message as the platform would and writes its XML.
    pub fn to_xml(self) -> Result<String, kefu_payload::Error> {
        // The builder treats empty optional text as absent.
        let mut builder = SendMsg::builder(self.openid, self.channel, self.msg)
            .appid(self.appid.unwrap_or_default())
            .kefuname(self.kefuname.unwrap_or_default())
            .kefuavatar(self.kefuavatar.unwrap_or_default())
            .ans_node_name(self.ans_node_name.unwrap_or_default());
        if let Some(event) = self.event {
            builder = builder.event(event);
        }
        builder.build()?.to_xml()
    }
}

/// The desk's `POST /v1/messages` body for the Dialogue platform.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageRequest {
    openid: String,
    channel: Channel,
    appid: Option<String>,
    msg: Msg,
    kefuname: Option<String>,
    kefuavatar: Option<String>,
    ans_node_name: Option<String>,
    event: Option<Event>,
}

/// The Dialogue platform's customer-service API behind [`Provider`].
#[derive(Clone)]
pub struct DialogueProvider {
    client: Client,
    default_appid: Option<String>,
    /// The TOKEN: a secret, never shown (see the `Debug` implementation).
    webh5_appid: String,
}

impl std::fmt::Debug for DialogueProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DialogueProvider")
            .field("client", &self.client)
            .field("default_appid", &self.default_appid)
            .field("webh5_appid", &"{TOKEN}")
            .finish()
    }
}

impl DialogueProvider {
    /// A provider sending through `client`. `default_appid` is the AppID of messages that name
    /// none and whose user's session knows none; `token` is the account's TOKEN, which stands
    /// in for the AppID on channel 7 (protocols.md §4.4: an empty appid there is answered with
    /// 1011).
    pub fn new(client: Client, default_appid: Option<String>, token: &str) -> DialogueProvider {
        DialogueProvider {
            client,
            default_appid,
            webh5_appid: token.to_owned(),
        }
    }

    /// The `appid` to send: the one asked for; else the TOKEN on channel 7; else the AppID the
    /// user's own session came from, so that a bot bound to several accounts answers on the
    /// right one; else the configured default.
    pub fn appid_for(
        &self,
        requested: Option<String>,
        session: Option<&str>,
        channel: Channel,
    ) -> Option<String> {
        requested.or_else(|| {
            if channel == Channel::WebH5 {
                Some(self.webh5_appid.clone())
            } else {
                session
                    .filter(|appid| !appid.is_empty())
                    .map(str::to_owned)
                    .or_else(|| self.default_appid.clone())
            }
        })
    }

    /// The `sendmsg` job of `message`, or the refusal of its first invalid field.
    pub fn sendmsg(&self, message: Outgoing<'_>) -> Result<Composed, Invalid> {
        let recipient = message.openid.to_owned();
        let xml = message.to_xml().map_err(|e| invalid_payload(&e))?;
        Ok(Composed {
            recipient,
            operation: Operation::SendMsg.name().to_owned(),
            payload: xml.into_bytes(),
        })
    }

    /// The `kefustate/change` job that moves `openid` to `state`; the call needs the AppID.
    pub fn kefustate(
        &self,
        openid: &str,
        appid: Option<&str>,
        state: KefuState,
    ) -> Result<Composed, Invalid> {
        let appid = appid.ok_or_else(|| {
            Invalid::new(
                "appid",
                "appid: the kefustate call needs the Official Account or Mini Program AppID; send `appid` or set dialogue.appid",
            )
        })?;
        let xml = KefuStateChange::new(appid, openid, state)
            .and_then(|change| change.to_xml())
            .map_err(|e| invalid_payload(&e))?;
        Ok(Composed {
            recipient: openid.to_owned(),
            operation: Operation::KefuStateChange.name().to_owned(),
            payload: xml.into_bytes(),
        })
    }
}

/// A message the payload crate refuses, as the platform would; `field` is empty when no single
/// field is at fault.
fn invalid_payload(error: &kefu_payload::Error) -> Invalid {
    Invalid::new(error.field().unwrap_or_default(), error.to_string())
        .with_code(error.platform_code())
}

/// Reads the desk's JSON object as `T`; a refusal names the field at fault.
pub fn parse_fields<T: serde::de::DeserializeOwned>(
    body: &Map<String, Value>,
) -> Result<T, Invalid> {
    serde_path_to_error::deserialize(Value::Object(body.clone())).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if path != "." {
            return Invalid::new(path.clone(), format!("{path}: {inner}"));
        }
        // A missing or unknown top-level field is reported at the root; its name is in the text.
        let message = inner.to_string();
        let field = message
            .split('`')
            .nth(1)
            .filter(|_| {
                message.starts_with("missing field") || message.starts_with("unknown field")
            })
            .unwrap_or_default()
            .to_owned();
        Invalid::new(field, message)
    })
}

impl Provider for DialogueProvider {
    fn kind(&self) -> &'static str {
        "dialogue"
    }

    fn compose(&self, request: ComposeRequest<'_>) -> Result<Vec<Composed>, Invalid> {
        let message: MessageRequest = parse_fields(request.body)?;
        let appid = self.appid_for(message.appid, request.session_appid, message.channel);
        Ok(vec![self.sendmsg(Outgoing {
            openid: &message.openid,
            channel: message.channel,
            appid,
            msg: message.msg,
            event: message.event,
            kefuname: message.kefuname,
            kefuavatar: message.kefuavatar,
            ans_node_name: message.ans_node_name,
        })?])
    }

    fn send<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Attempt> {
        Box::pin(async move {
            let Some(operation) = Operation::ALL
                .into_iter()
                .find(|operation| operation.name() == job.operation)
            else {
                return Attempt::new(
                    Class::Terminal(Reason::Unknown),
                    None,
                    format!("the Dialogue platform has no operation {:?}", job.operation),
                );
            };
            let Ok(xml) = std::str::from_utf8(&job.payload) else {
                return Attempt::new(
                    Class::Terminal(Reason::Content),
                    None,
                    "the stored payload is not UTF-8",
                );
            };
            match self.client.call_xml(operation, xml).await {
                Ok(reply) => Attempt::success().with_rid(reply.rid().map(str::to_owned)),
                Err(error) => {
                    let rid = error.rid().map(str::to_owned);
                    classify(operation, &error).with_rid(rid)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> DialogueProvider {
        let client = Client::builder(
            "TOKEN0123456789",
            "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
            "Gg8HejYTkUsEIlG",
        )
        .build()
        .unwrap();
        DialogueProvider::new(client, Some("wxDEFAULT".into()), "TOKEN0123456789")
    }

    fn compose(body: Value, session_appid: Option<&str>) -> Result<SendMsg, Invalid> {
        let Value::Object(body) = body else {
            panic!("not an object")
        };
        let jobs = provider().compose(ComposeRequest {
            body: &body,
            session_appid,
        })?;
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].operation, "sendmsg");
        Ok(SendMsg::from_xml(std::str::from_utf8(&jobs[0].payload).unwrap()).unwrap())
    }

    #[test]
    fn the_appid_is_the_requested_then_the_sessions_then_the_default() {
        let body = |appid: Option<&str>| {
            let mut body = serde_json::json!({"openid": "oU", "channel": 0, "msg": "hi"});
            if let Some(appid) = appid {
                body["appid"] = appid.into();
            }
            body
        };
        // A bot bound to several OAs answers on the one the user wrote to.
        let send = compose(body(None), Some("wxSESSION")).unwrap();
        assert_eq!(send.appid(), Some("wxSESSION"));
        let send = compose(body(Some("wxASKED")), Some("wxSESSION")).unwrap();
        assert_eq!(send.appid(), Some("wxASKED"));
        let send = compose(body(None), None).unwrap();
        assert_eq!(send.appid(), Some("wxDEFAULT"));
        // Channel 7 carries the TOKEN whatever the session says.
        let mut web = body(None);
        web["channel"] = 7.into();
        let send = compose(web, Some("wxSESSION")).unwrap();
        assert_eq!(send.appid(), Some("TOKEN0123456789"));
    }

    #[test]
    fn debug_never_shows_the_token() {
        let shown = format!("{:?}", provider());
        assert!(!shown.contains("TOKEN0123456789"), "{shown}");
        assert!(shown.contains("wxDEFAULT"), "{shown}");
    }

    #[test]
    fn a_refusal_names_the_field() {
        let missing = compose(serde_json::json!({"channel": 0, "msg": "hi"}), None).unwrap_err();
        assert_eq!(missing.field, "openid");
        let unknown = compose(
            serde_json::json!({"openid": "o", "channel": 0, "msg": "hi", "x": 1}),
            None,
        )
        .unwrap_err();
        assert_eq!(unknown.field, "x");
        let nested = compose(
            serde_json::json!({"openid": "o", "channel": 0, "msg": "hi", "event": 5}),
            None,
        )
        .unwrap_err();
        assert_eq!(nested.field, "event");
        assert!(nested.message.starts_with("event: "), "{nested}");
    }
}
