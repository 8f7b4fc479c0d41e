//! How a Dialogue call's failure is classified into kefu-core's classes (protocols.md §9.2),
//! and a convenience retry loop over [`kefu_core::RetryPolicy`] for direct callers.

use core::future::Future;

use kefu_core::{Attempt, Class, Reason, RetryDecision, RetryPolicy};

use crate::error::{Error, Operation, PlatformCode};

/// Classifies `error`, a failure of `operation`:
///
/// * not sent (connect, DNS, TLS) or the platform's −1 (system busy): [`Class::Transient`];
/// * ambiguous (the request may have been processed): [`Class::Ambiguous`] for `sendmsg`, which
///   is never replayed, and [`Class::Transient`] for the idempotent kefustate calls, marked
///   [`maybe_applied`](Attempt::maybe_applied) so that running out of attempts reports it
///   ambiguous;
/// * anything else is [`Class::Terminal`]: a TOKEN, signature or approval error, or a builder
///   error, is [`Reason::Config`]; a message the platform or the payload crate refuses is
///   [`Reason::Content`]; the rest is [`Reason::Unknown`] with the code kept.
///
/// ```
/// # fn demo(err: &kefu_client::Error) {
/// use kefu_client::{Operation, classify};
/// use kefu_core::Class;
/// match classify(Operation::SendMsg, err).class {
///     Class::Transient => { /* back off and try again */ }
///     Class::Ambiguous => { /* report "outcome unknown"; a person decides to resend */ }
///     _ => { /* report the failure */ }
/// }
/// # }
/// ```
pub fn classify(operation: Operation, error: &Error) -> Attempt {
    let code = error.platform_code().map(|code| code.code());
    let class = if error.is_transient() {
        Class::Transient
    } else if error.is_ambiguous() {
        if operation.is_idempotent() {
            Class::Transient
        } else {
            Class::Ambiguous
        }
    } else {
        Class::Terminal(reason(error))
    };
    Attempt::new(class, code, error.to_string())
        .with_maybe_applied(error.is_ambiguous() && operation.is_idempotent())
}

/// Why a terminal failure failed, as the desk sees it.
fn reason(error: &Error) -> Reason {
    if error.is_config() {
        return Reason::Config;
    }
    if error.is_payload() {
        return Reason::Content;
    }
    match error.platform_code() {
        Some(
            PlatformCode::InvalidToken
            | PlatformCode::BotNotApproved
            | PlatformCode::SignatureMissingUserid
            | PlatformCode::SignatureEmpty
            | PlatformCode::SignatureExpired
            | PlatformCode::SignatureCheckFailed
            | PlatformCode::InvalidAppid,
        ) => Reason::Config,
        Some(
            PlatformCode::LabelFieldEmpty
            | PlatformCode::RequiredFieldEmpty
            | PlatformCode::Unsupported,
        ) => Reason::Content,
        _ => Reason::Unknown,
    }
}

/// Runs `attempt` until it succeeds or `policy` stops, sleeping with `tokio::time::sleep`
/// between attempts and drawing the jitter from a thread-local RNG.
///
/// The error returned is the last one, with [`Error::attempts`] set. This is for direct callers
/// such as a command-line `send`; a durable outbox should call [`RetryPolicy::decide`] itself
/// and persist its state between attempts. The Dialogue platform has no credential to refresh,
/// so no attempt is a replay.
///
/// ```no_run
/// # async fn demo(client: kefu_client::Client, xml: String) -> Result<(), kefu_client::Error> {
/// use kefu_client::{Operation, retry};
/// use kefu_core::RetryPolicy;
/// let reply = retry(&RetryPolicy::default(), Operation::SendMsg, || {
///     client.call_xml(Operation::SendMsg, &xml)
/// })
/// .await?;
/// println!("sent, rid {:?}", reply.rid());
/// # Ok(()) }
/// ```
pub async fn retry<T, F, Fut>(
    policy: &RetryPolicy,
    operation: Operation,
    mut attempt: F,
) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let start = tokio::time::Instant::now();
    let mut made: u32 = 0;
    loop {
        made = made.saturating_add(1);
        let error = match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let class = classify(operation, &error).class;
        match policy.decide(class, made, 0, start.elapsed(), rand::random()) {
            RetryDecision::RetryAfter(wait) => {
                tracing::debug!(
                    operation = operation.name(),
                    attempt = made,
                    wait_ms = wait.as_millis() as u64,
                    "kefu call failed, retrying: {error}"
                );
                tokio::time::sleep(wait).await;
            }
            decision => {
                tracing::debug!(
                    operation = operation.name(),
                    attempt = made,
                    ?decision,
                    "kefu call failed, not retrying"
                );
                return Err(error.with_attempts(made));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use hyper::StatusCode;

    use super::*;
    use std::time::Duration;

    use crate::error::{ConfigError, InvalidResponse, Kind};

    fn err(kind: Kind) -> Error {
        Error::new(kind)
    }

    fn platform(code: i64) -> Error {
        err(Kind::Platform {
            code: PlatformCode::from_code(code),
            status: StatusCode::OK,
        })
    }

    fn status(code: u16) -> Error {
        err(Kind::HttpStatus {
            status: StatusCode::from_u16(code).unwrap(),
        })
    }

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn class_table() {
        use Operation::*;
        let connect = || err(Kind::Connect { timeout: false });
        let connect_timeout = || err(Kind::Connect { timeout: true });
        let reset = || err(Kind::Transport { timeout: false });
        let timeout = || err(Kind::Transport { timeout: true });
        let no_code = || {
            err(Kind::InvalidResponse {
                status: StatusCode::OK,
                reason: InvalidResponse::MissingCode,
            })
        };
        let transient = Class::Transient;
        let ambiguous = Class::Ambiguous;
        #[rustfmt::skip]
        let table: Vec<(Operation, Error, Class, bool)> = vec![
            // Not sent: transient for every operation.
            (SendMsg, connect(), transient, false),
            (SendMsg, connect_timeout(), transient, false),
            (KefuStateGet, connect(), transient, false),
            (KefuStateChange, connect(), transient, false),
            // -1 (system busy): transient, even for sendmsg.
            (SendMsg, platform(-1), transient, false),
            // Ambiguous: never retried for sendmsg; transient, but perhaps applied, for the
            // idempotent kefustate calls.
            (SendMsg, reset(), ambiguous, false),
            (SendMsg, timeout(), ambiguous, false),
            (SendMsg, status(500), ambiguous, false),
            (SendMsg, status(503), ambiguous, false),
            (SendMsg, no_code(), ambiguous, false),
            (KefuStateGet, reset(), transient, true),
            (KefuStateGet, timeout(), transient, true),
            (KefuStateChange, timeout(), transient, true),
            (KefuStateChange, status(502), transient, true),
            (KefuStateChange, no_code(), transient, true),
            // Terminal: every other platform code, 4xx, config and payload errors.
            (SendMsg, platform(1001), Class::Terminal(Reason::Config), false),
            (SendMsg, platform(1002), Class::Terminal(Reason::Config), false),
            (SendMsg, platform(1008), Class::Terminal(Reason::Content), false),
            (SendMsg, platform(1011), Class::Terminal(Reason::Config), false),
            (SendMsg, platform(2928312), Class::Terminal(Reason::Content), false),
            (SendMsg, platform(42), Class::Terminal(Reason::Unknown), false),
            (KefuStateChange, platform(1001), Class::Terminal(Reason::Config), false),
            (SendMsg, status(400), Class::Terminal(Reason::Unknown), false),
            (KefuStateGet, status(404), Class::Terminal(Reason::Unknown), false),
            (SendMsg, err(Kind::Config(ConfigError::EmptyToken)), Class::Terminal(Reason::Config), false),
        ];
        for (i, (op, error, class, maybe_applied)) in table.iter().enumerate() {
            let attempt = classify(*op, error);
            assert_eq!(attempt.class, *class, "row {i}: {op}: {error:?}");
            assert_eq!(
                attempt.maybe_applied, *maybe_applied,
                "row {i}: {op}: {error:?}"
            );
            assert_eq!(
                attempt.code,
                error.platform_code().map(|c| c.code()),
                "row {i}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retry_loop_sleeps_and_counts() {
        use std::cell::Cell;
        let calls = Cell::new(0u32);
        let p = RetryPolicy::default().with_jitter_ratio(0.0);
        let p = &p;
        let started = tokio::time::Instant::now();
        let result: Result<(), Error> = retry(p, Operation::SendMsg, || {
            calls.set(calls.get() + 1);
            async { Err(platform(-1)) }
        })
        .await;
        let error = result.unwrap_err();
        assert_eq!(calls.get(), 3);
        assert_eq!(error.attempts(), 3);
        assert_eq!(started.elapsed(), S(3), "1 s + 2 s of backoff");

        calls.set(0);
        let result: Result<(), Error> = retry(p, Operation::SendMsg, || {
            calls.set(calls.get() + 1);
            async { Err(err(Kind::Transport { timeout: true })) }
        })
        .await;
        assert!(result.unwrap_err().is_ambiguous());
        assert_eq!(calls.get(), 1, "an ambiguous send is never replayed");

        calls.set(0);
        let result = retry(p, Operation::SendMsg, || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move { if n < 2 { Err(platform(-1)) } else { Ok(n) } }
        })
        .await;
        assert_eq!(result.unwrap(), 2);
    }
}
