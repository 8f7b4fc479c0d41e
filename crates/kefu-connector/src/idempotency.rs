//! `Idempotency-Key`: a desk that retries a `POST` after a timeout gets the first answer again
//! instead of a second message.
//!
//! A desk whose request timed out cannot know whether the work was stored. With a key, it sends
//! the same request again: the relay answers what it answered the first time, byte for byte, with
//! `Idempotent-Replayed: true`, and creates nothing. The key is claimed in the store transaction
//! that stores the work, so two copies racing each other cannot both create it, and a key is never
//! saved without its work (or the other way round).
//!
//! - A key is 1 to 255 printable ASCII characters; anything else is 400, naming the header.
//! - The relay has one desk key, so keys share one scope ([`DESK_SCOPE`]). A request is "the
//!   same" when its method, route, path parameters and body (byte for byte) are: the SHA-256 of
//!   those is stored with the key. The same key on another request, also on another route, is
//!   422: a desk that reuses a key has a bug, and doing both requests would hide it.
//! - Only work that was done is remembered (`202`): a request refused by validation (400, 422) or
//!   by the state of a message (404, 409) stores nothing and leaves the key free, as Stripe does,
//!   so the desk can correct the request and send it with the same key.
//! - Keys are kept for `server.idempotency_retention_secs` (default 24 h); after that the key is
//!   new again, and the periodic purge removes it.

use axum::http::HeaderMap;
use sha2::{Digest as _, Sha256};

// The claim's data lives with the store that keeps it; these names keep their paths here.
pub use kefu_store::idempotency::{Claim, Claimed, DESK_SCOPE, Earlier, Saved};

/// The request header that carries the key.
pub const HEADER: &str = "idempotency-key";
/// The response header that marks an answer given again for a repeated request.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
/// The longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 255;

/// Why an `Idempotency-Key` header is refused: the message says what a valid key is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(String);

/// The key of a request, or `None` when the request has none; validated before anything else.
pub fn key_of(headers: &HeaderMap) -> Result<Option<String>, KeyError> {
    let mut values = headers.get_all(HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(KeyError(
            "Idempotency-Key: send the header once per request".into(),
        ));
    }
    let bytes = value.as_bytes();
    let printable = bytes.iter().all(|byte| (b' '..=b'~').contains(byte));
    if bytes.is_empty() || bytes.len() > MAX_KEY_LEN || !printable {
        return Err(KeyError(format!(
            "Idempotency-Key: expected 1 to {MAX_KEY_LEN} printable ASCII characters, such as a UUID, got {} bytes{}",
            bytes.len(),
            if printable {
                ""
            } else {
                " with other characters"
            }
        )));
    }
    // Only printable ASCII passed: the bytes are UTF-8.
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
}

/// The SHA-256, in hex, of what makes two requests the same ([`Claim::request_hash`]): the method, the route template,
/// the path parameters and the body. Every part is length-prefixed, so that moving bytes
/// between parts changes the hash.
pub fn request_hash(method: &str, route: &str, params: &[&str], body: &[u8]) -> String {
    let mut hash = Sha256::new();
    let parts = [method.as_bytes(), route.as_bytes()]
        .into_iter()
        .chain(params.iter().map(|param| param.as_bytes()))
        .chain([body]);
    for part in parts {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    hex::encode(hash.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(HEADER, HeaderValue::from_bytes(value).unwrap());
        }
        headers
    }

    #[test]
    fn keys_are_bounded_printable_ascii_and_sent_once() {
        assert_eq!(key_of(&headers(&[])), Ok(None));
        assert_eq!(
            key_of(&headers(&[b"0f8e-4a1c ~!"])),
            Ok(Some("0f8e-4a1c ~!".into()))
        );
        let longest = "k".repeat(MAX_KEY_LEN);
        assert_eq!(
            key_of(&headers(&[longest.as_bytes()])),
            Ok(Some(longest.clone()))
        );
        let too_long = "k".repeat(MAX_KEY_LEN + 1);
        for bad in [&b""[..], too_long.as_bytes(), "clé".as_bytes(), b"tab\tkey"] {
            let error = key_of(&headers(&[bad])).unwrap_err().to_string();
            assert!(
                error.starts_with("Idempotency-Key: expected 1 to 255"),
                "{error}"
            );
        }
        let twice = key_of(&headers(&[b"a", b"a"])).unwrap_err().to_string();
        assert!(twice.contains("once"), "{twice}");
    }

    #[test]
    fn the_hash_covers_method_route_params_and_body_without_ambiguity() {
        let base = request_hash(
            "POST",
            "/v1/sessions/{openid}/{action}",
            &["o1", "quit"],
            b"{}",
        );
        assert_eq!(
            base,
            request_hash(
                "POST",
                "/v1/sessions/{openid}/{action}",
                &["o1", "quit"],
                b"{}"
            )
        );
        for other in [
            request_hash(
                "PUT",
                "/v1/sessions/{openid}/{action}",
                &["o1", "quit"],
                b"{}",
            ),
            request_hash("POST", "/v1/messages", &["o1", "quit"], b"{}"),
            request_hash(
                "POST",
                "/v1/sessions/{openid}/{action}",
                &["o2", "quit"],
                b"{}",
            ),
            request_hash(
                "POST",
                "/v1/sessions/{openid}/{action}",
                &["o1q", "uit"],
                b"{}",
            ),
            request_hash(
                "POST",
                "/v1/sessions/{openid}/{action}",
                &["o1", "quit"],
                b"{ }",
            ),
        ] {
            assert_ne!(base, other);
        }
        assert_eq!(base.len(), 64);
    }
}
