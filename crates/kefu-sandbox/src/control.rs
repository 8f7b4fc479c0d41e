//! The `/sandbox` control routes: what the sandbox accepted, the simulated users of the Dialogue
//! platform and of the Official Account, and the `api.weixin.qq.com` accounts.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Limited};
use hyper::header::{ALLOW, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use kefu_http_server::RequestBody;
use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};

use crate::OaSay;
use crate::cgibin::{Injection, MAX_INJECTED_CALLS};
use crate::push::CallbackDelivery;
use crate::server::{App, Body, error_response, json_response, unix_ms};
use crate::user::{AskForPerson, Redelivery, Say, SayError, UserAction};

/// The largest `/sandbox` request body read.
const MAX_CONTROL_BODY: usize = 64 * 1024;

/// The `/sandbox` control routes.
pub(crate) async fn control(app: &App, request: Request<RequestBody>) -> Response<Body> {
    let path = request.uri().path().to_owned();
    let Some(segments) = decode_segments(&path) else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "the path holds a percent-encoded sequence that is not UTF-8",
            None,
        );
    };
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let method = request.method().clone();
    match segments.as_slice() {
        ["sandbox", "messages"] => {
            if method != Method::GET {
                return method_not_allowed("GET");
            }
            match filter_query(request.uri().query(), "openid") {
                Ok(openid) => json_value(StatusCode::OK, &app.store.messages(openid.as_deref())),
                Err(message) => error_response(StatusCode::BAD_REQUEST, &message, None),
            }
        }
        ["sandbox", "users", openid] if !openid.is_empty() => {
            if method != Method::GET {
                return method_not_allowed("GET");
            }
            json_value(StatusCode::OK, &app.store.snapshot(openid))
        }
        ["sandbox", "users", openid, action] if !openid.is_empty() => {
            let Some(route) = UserRoute::parse(action) else {
                return not_found();
            };
            if method != Method::POST {
                return method_not_allowed("POST");
            }
            let openid = (*openid).to_owned();
            user_route(app, &openid, route, request)
                .await
                .unwrap_or_else(|response| *response)
        }
        ["sandbox", "oa", "users", openid, action] if !openid.is_empty() => {
            let route = match *action {
                "say" => OaRoute::Say,
                "redeliver" => OaRoute::Redeliver,
                _ => return not_found(),
            };
            if method != Method::POST {
                return method_not_allowed("POST");
            }
            let openid = (*openid).to_owned();
            oa_route(app, &openid, route, request)
                .await
                .unwrap_or_else(|response| *response)
        }
        ["sandbox", "yunzhenji", rest @ ..] => {
            crate::vendors_control::yunzhenji(app, rest, request)
                .await
                .unwrap_or_else(|response| *response)
        }
        ["sandbox", "gateway", rest @ ..] => crate::vendors_control::gateway(app, rest, request)
            .await
            .unwrap_or_else(|response| *response),
        ["sandbox", "accounts", appid, rest @ ..] if !appid.is_empty() => {
            let appid = (*appid).to_owned();
            account_route(app, &appid, rest, request)
                .await
                .unwrap_or_else(|response| *response)
        }
        _ => not_found(),
    }
}

/// `/sandbox/accounts/{appid}/…`: an `api.weixin.qq.com` account. `Err` is a response for a
/// request that cannot be served (a method, a body or an AppID).
async fn account_route(
    app: &App,
    appid: &str,
    rest: &[&str],
    request: Request<RequestBody>,
) -> Result<Response<Body>, Box<Response<Body>>> {
    let method = request.method().clone();
    let expect = |allowed: Method| expect(&method, allowed);
    let unknown = || {
        Box::new(error_response(
            StatusCode::NOT_FOUND,
            &format!("no account has the AppID {appid:?}; configure it with --api-account"),
            Some("appid"),
        ))
    };
    let response = match rest {
        [] => {
            expect(Method::GET)?;
            json_value(
                StatusCode::OK,
                &app.api.snapshot(appid).ok_or_else(unknown)?,
            )
        }
        ["messages"] => {
            expect(Method::GET)?;
            let openid = filter_query(request.uri().query(), "openid").map_err(|message| {
                Box::new(error_response(StatusCode::BAD_REQUEST, &message, None))
            })?;
            let requests = app.api.requests(appid, openid.as_deref());
            json_value(StatusCode::OK, &requests.ok_or_else(unknown)?)
        }
        ["supersede"] => {
            expect(Method::POST)?;
            parse::<NoFields>(&read_body(request).await?, true, "{} or nothing")?;
            json_value(
                StatusCode::OK,
                &app.api.supersede(appid).ok_or_else(unknown)?,
            )
        }
        ["inject"] => {
            expect(Method::POST)?;
            let injection = parse::<Injection>(
                &read_body(request).await?,
                false,
                r#"{"errcode": N (not 0), "count": calls (1 to 10000)}"#,
            )?;
            if injection.errcode == 0 || !(1..=MAX_INJECTED_CALLS).contains(&injection.count) {
                return Err(Box::new(error_response(
                    StatusCode::BAD_REQUEST,
                    "errcode must not be 0 and count must be 1 to 10000",
                    None,
                )));
            }
            json_value(
                StatusCode::OK,
                &app.api.inject(appid, injection).ok_or_else(unknown)?,
            )
        }
        ["users", openid] if !openid.is_empty() => {
            expect(Method::GET)?;
            json_value(
                StatusCode::OK,
                &app.api.user(appid, openid).ok_or_else(unknown)?,
            )
        }
        ["users", openid, "write"] if !openid.is_empty() => {
            expect(Method::POST)?;
            parse::<NoFields>(&read_body(request).await?, true, "{} or nothing")?;
            let user = app.api.user_wrote(appid, openid, unix_ms());
            json_value(StatusCode::OK, &user.ok_or_else(unknown)?)
        }
        _ => not_found(),
    };
    Ok(response)
}

/// Every route, for the 404 answer.
const ROUTES: &str = "POST /openapi/sendmsg/{TOKEN}, POST /openapi/kefustate/get/{TOKEN}, POST /openapi/kefustate/change/{TOKEN}, GET /sandbox/messages[?openid=…], GET /sandbox/users/{openid}, POST /sandbox/users/{openid}/say, /ask-for-person, /rate, /enter, /leave and /redeliver, POST /sandbox/oa/users/{openid}/say and /redeliver, POST /cgi-bin/stable_token, POST /cgi-bin/message/custom/send?access_token=…, POST /cgi-bin/message/custom/typing and /cgi-bin/message/custom/business/typing, GET /sandbox/accounts/{appid}, GET /sandbox/accounts/{appid}/messages[?openid=…], POST /sandbox/accounts/{appid}/supersede, POST /sandbox/accounts/{appid}/inject, GET /sandbox/accounts/{appid}/users/{openid}, POST /sandbox/accounts/{appid}/users/{openid}/write, POST /wechat/sendMessage, GET /sandbox/yunzhenji, POST /sandbox/yunzhenji/settings, POST /sandbox/yunzhenji/partial, GET /sandbox/yunzhenji/messages[?target_wxid=…], GET /sandbox/yunzhenji/pushes, POST /sandbox/yunzhenji/customers/{wxid}/say, POST /wisdom-api/weixin/v1/sendCustomerMessage, GET /sandbox/gateway, POST /sandbox/gateway/settings, POST /sandbox/gateway/inject, GET /sandbox/gateway/messages[?openid=…]";

pub(crate) fn not_found() -> Response<Body> {
    error_response(
        StatusCode::NOT_FOUND,
        &format!("no such route; the sandbox serves {ROUTES}"),
        None,
    )
}

/// `POST /sandbox/users/{openid}/<action>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UserRoute {
    Say,
    AskForPerson,
    Rate,
    Enter,
    Leave,
    Redeliver,
}

impl UserRoute {
    fn parse(segment: &str) -> Option<UserRoute> {
        Some(match segment {
            "say" => UserRoute::Say,
            "ask-for-person" => UserRoute::AskForPerson,
            "rate" => UserRoute::Rate,
            "enter" => UserRoute::Enter,
            "leave" => UserRoute::Leave,
            "redeliver" => UserRoute::Redeliver,
            _ => return None,
        })
    }
}

/// `POST /sandbox/oa/users/{openid}/<action>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OaRoute {
    Say,
    Redeliver,
}

/// The body of `rate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateBody {
    assessment: i64,
}

/// The body of `enter` and `leave`: nothing, or `{}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoFields {}

/// The body of `redeliver`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedeliverBody {
    #[serde(default)]
    reencrypt: bool,
}

impl RedeliverBody {
    fn how(&self) -> Redelivery {
        if self.reencrypt {
            Redelivery::Reencrypt
        } else {
            Redelivery::SameCiphertext
        }
    }
}

/// One of the user's actions. `Err` is a response for a body that could not be read or parsed.
async fn user_route(
    app: &App,
    openid: &str,
    route: UserRoute,
    request: Request<RequestBody>,
) -> Result<Response<Body>, Box<Response<Body>>> {
    let body = read_body(request).await?;
    let result = match route {
        UserRoute::Say => {
            let say = parse::<Say>(
                &body,
                false,
                r#"{"text": "…", "channel"?: 0, "appid"?: "wx…"}"#,
            )?;
            app.say(openid, say).await
        }
        UserRoute::AskForPerson => {
            let ask = parse::<AskForPerson>(&body, true, r#"{"text"?: "转人工"} or nothing"#)?;
            app.ask_for_person(openid, ask).await
        }
        UserRoute::Rate => {
            let rate = parse::<RateBody>(&body, false, r#"{"assessment": 1..=5}"#)?;
            app.rate(openid, rate.assessment).await
        }
        UserRoute::Enter | UserRoute::Leave => {
            parse::<NoFields>(&body, true, "{} or nothing")?;
            let action = if route == UserRoute::Enter {
                UserAction::Enter
            } else {
                UserAction::Leave
            };
            app.act(openid, action, None, None).await
        }
        UserRoute::Redeliver => {
            let redeliver =
                parse::<RedeliverBody>(&body, true, r#"{"reencrypt"?: false} or nothing"#)?;
            app.redeliver(openid, redeliver.how()).await
        }
    };
    Ok(match result {
        Ok(outcome) => json_value(delivery_status(&outcome.callback), &outcome),
        Err(error) => say_error(&error),
    })
}

/// One of the Official Account routes. `Err` is a response for a body that could not be read or
/// parsed.
async fn oa_route(
    app: &App,
    openid: &str,
    route: OaRoute,
    request: Request<RequestBody>,
) -> Result<Response<Body>, Box<Response<Body>>> {
    let body = read_body(request).await?;
    let result = match route {
        OaRoute::Say => {
            let say = parse::<OaSay>(
                &body,
                false,
                r#"{"text": "…", "format"?: "xml"|"json", "mode"?: "safe"|"compatible"|"plain"}"#,
            )?;
            app.oa_say(openid, say).await
        }
        OaRoute::Redeliver => {
            let redeliver =
                parse::<RedeliverBody>(&body, true, r#"{"reencrypt"?: false} or nothing"#)?;
            app.oa_redeliver(openid, redeliver.how()).await
        }
    };
    Ok(match result {
        Ok(outcome) => json_value(delivery_status(&outcome.callback), &outcome),
        Err(error) => say_error(&error),
    })
}

/// 200 unless the push could not be delivered (502). The target's own status, even a 5xx, is
/// an answer and reported as such.
pub(crate) fn delivery_status(delivery: &CallbackDelivery) -> StatusCode {
    match delivery {
        CallbackDelivery::Failed { .. } => StatusCode::BAD_GATEWAY,
        _ => StatusCode::OK,
    }
}

/// 409 for a request the state does not allow now, 422 for an invalid one.
fn say_error(error: &SayError) -> Response<Body> {
    let status = if error.is_conflict() {
        StatusCode::CONFLICT
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    error_response(status, &error.to_string(), error.field())
}

/// Reads a control request body (at most 64 KiB).
pub(crate) async fn read_body(request: Request<RequestBody>) -> Result<Bytes, Box<Response<Body>>> {
    match Limited::new(request.into_body(), MAX_CONTROL_BODY)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            Err(Box::new(error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the body exceeds {MAX_CONTROL_BODY} bytes"),
                None,
            )))
        }
        Err(_) => Err(Box::new(error_response(
            StatusCode::BAD_REQUEST,
            "the body could not be read",
            None,
        ))),
    }
}

/// Parses a JSON body; an empty one (or only whitespace) reads as `{}` when `optional`.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(
    body: &[u8],
    optional: bool,
    shape: &str,
) -> Result<T, Box<Response<Body>>> {
    let body: &[u8] = if optional && body.trim_ascii().is_empty() {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|error| {
        Box::new(error_response(
            StatusCode::BAD_REQUEST,
            &format!("the body must be {shape}: {error}"),
            None,
        ))
    })
}

/// Reads `?<name>=…` (such as `openid`); any other parameter is refused, so that a typo does
/// not silently list everything.
pub(crate) fn filter_query(query: Option<&str>, name: &str) -> Result<Option<String>, String> {
    let mut found = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode_str(value)
            .decode_utf8()
            .map_err(|_| format!("the {key} parameter is not UTF-8 once percent-decoded"))?;
        if key != name {
            return Err(format!(
                "unknown query parameter {key:?}; the only one is {name}"
            ));
        }
        if found.is_some() {
            return Err(format!("{name} is given twice"));
        }
        found = Some(value.into_owned());
    }
    Ok(found)
}

/// The path's segments after the leading `/`, percent-decoded; `None` when one is not UTF-8.
fn decode_segments(path: &str) -> Option<Vec<String>> {
    path.trim_start_matches('/')
        .split('/')
        .map(|segment| {
            percent_decode_str(segment)
                .decode_utf8()
                .ok()
                .map(|s| s.into_owned())
        })
        .collect()
}

pub(crate) fn json_value<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_string(value) {
        Ok(body) => json_response(status, body),
        Err(error) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot write the answer: {error}"),
            None,
        ),
    }
}

/// Refuses a method other than `allowed` (GET or POST) with 405.
pub(crate) fn expect(method: &Method, allowed: Method) -> Result<(), Box<Response<Body>>> {
    if *method == allowed {
        Ok(())
    } else if allowed == Method::GET {
        Err(Box::new(method_not_allowed("GET")))
    } else {
        Err(Box::new(method_not_allowed("POST")))
    }
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut response = error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("this route only accepts {allow}"),
        None,
    );
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_messages_query_takes_only_openid() {
        let messages_query = |query| filter_query(query, "openid");
        assert_eq!(messages_query(None), Ok(None));
        assert_eq!(messages_query(Some("")), Ok(None));
        assert_eq!(
            messages_query(Some("openid=o%2B1")),
            Ok(Some("o+1".to_owned()))
        );
        assert_eq!(
            messages_query(Some("openid=a+b")),
            Ok(Some("a+b".to_owned()))
        );
        assert!(
            messages_query(Some("openId=o"))
                .unwrap_err()
                .contains("openId")
        );
        assert!(messages_query(Some("openid=a&openid=b")).is_err());
    }

    #[test]
    fn segments_are_percent_decoded() {
        assert_eq!(
            decode_segments("/sandbox/users/o%E4%BD%A0/say"),
            Some(vec![
                "sandbox".into(),
                "users".into(),
                "o你".into(),
                "say".into()
            ])
        );
        assert_eq!(decode_segments("/sandbox/users/%FF"), None);
    }
}
