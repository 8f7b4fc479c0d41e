//! The `/sandbox/yunzhenji/…` and `/sandbox/gateway/…` control routes: the vendors' settings,
//! their records, a customer writing to the WeCom account, and injected gateway answers.

use hyper::{Method, Request, Response, StatusCode};
use kefu_http_server::RequestBody;
use serde::Deserialize;

use crate::control::{
    delivery_status, expect, filter_query, json_value, not_found, parse, read_body,
};
use crate::gateway::{GatewayChange, GatewayInjection};
use crate::server::{App, Body, error_response, unix_ms};
use crate::yunzhenji::{CustomerSays, YunzhenjiChange};

/// The body of `POST /sandbox/yunzhenji/partial`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Partial {
    accept: usize,
}

type Answer = Result<Response<Body>, Box<Response<Body>>>;

/// 400 for a query that is not the route's.
fn query(
    request: &Request<RequestBody>,
    name: &str,
) -> Result<Option<String>, Box<Response<Body>>> {
    filter_query(request.uri().query(), name)
        .map_err(|message| Box::new(error_response(StatusCode::BAD_REQUEST, &message, None)))
}

/// `/sandbox/yunzhenji/…`.
pub(crate) async fn yunzhenji(app: &App, rest: &[&str], request: Request<RequestBody>) -> Answer {
    let method = request.method().clone();
    let vendor = &app.yunzhenji;
    Ok(match rest {
        [] => {
            expect(&method, Method::GET)?;
            json_value(StatusCode::OK, &vendor.status())
        }
        ["settings"] => {
            expect(&method, Method::POST)?;
            let change = parse::<YunzhenjiChange>(
                &read_body(request).await?,
                false,
                r#"{"callback_url"?: "http://…", "push_delay_ms"?: 1000, "failure_rate"?: 0.0}"#,
            )?;
            match vendor.change(&change) {
                Ok(status) => json_value(StatusCode::OK, &status),
                Err(error) => error_response(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &error.to_string(),
                    Some(error.field()),
                ),
            }
        }
        ["partial"] => {
            expect(&method, Method::POST)?;
            let partial = parse::<Partial>(&read_body(request).await?, false, r#"{"accept": N}"#)?;
            json_value(StatusCode::OK, &vendor.accept_only(partial.accept))
        }
        ["messages"] => {
            expect(&method, Method::GET)?;
            let target = query(&request, "target_wxid")?;
            json_value(StatusCode::OK, &vendor.messages(target.as_deref()))
        }
        ["pushes"] => {
            expect(&method, Method::GET)?;
            json_value(StatusCode::OK, &vendor.pushes())
        }
        ["customers", wxid, "say"] => {
            expect(&method, Method::POST)?;
            let wxid = (*wxid).to_owned();
            let says = parse::<CustomerSays>(
                &read_body(request).await?,
                false,
                r#"{"text": "…", "app_id"?: "…", "group"?: "…"}"#,
            )?;
            match vendor.customer_says(&wxid, says, unix_ms()).await {
                Ok(push) => json_value(delivery_status(&push.callback), &push),
                Err(error) => error_response(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &error.to_string(),
                    Some(error.field()),
                ),
            }
        }
        _ => not_found(),
    })
}

/// `/sandbox/gateway/…`.
pub(crate) async fn gateway(app: &App, rest: &[&str], request: Request<RequestBody>) -> Answer {
    let method = request.method().clone();
    let gateway = &app.gateway;
    Ok(match rest {
        [] => {
            expect(&method, Method::GET)?;
            json_value(StatusCode::OK, &gateway.status())
        }
        ["settings"] => {
            expect(&method, Method::POST)?;
            let change = parse::<GatewayChange>(
                &read_body(request).await?,
                false,
                r#"{"errcode_as_string"?: true}"#,
            )?;
            json_value(StatusCode::OK, &gateway.change(change))
        }
        ["inject"] => {
            expect(&method, Method::POST)?;
            let injection = parse::<GatewayInjection>(
                &read_body(request).await?,
                false,
                r#"{"errcode": N or "code": M, "count": C, "as_string"?: false}"#,
            )?;
            match gateway.inject(injection) {
                Ok(status) => json_value(StatusCode::OK, &status),
                Err(message) => error_response(StatusCode::BAD_REQUEST, &message, None),
            }
        }
        ["messages"] => {
            expect(&method, Method::GET)?;
            let open_id = query(&request, "openid")?;
            json_value(StatusCode::OK, &gateway.messages(open_id.as_deref()))
        }
        _ => not_found(),
    })
}
