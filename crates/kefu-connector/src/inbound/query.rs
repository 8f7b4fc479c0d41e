//! Query strings of WeChat callbacks, decoded exactly once (protocols.md §3.10 item 4).
//!
//! A form decoder turns `+` into a space, which breaks a base64 `echostr`; WeCom sends `+`, `/`
//! and `=` percent-encoded (`%2B`, `%2F`, `%3D`), so a single RFC 3986 percent-decode gives the
//! value back exactly, and a literal `+` stays a `+`.

use percent_encoding::percent_decode_str;

/// The decoded parameters of a query string, in order. A repeated name keeps its first value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query(Vec<(String, String)>);

impl Query {
    /// Splits `raw` (the part after `?`, possibly empty) on `&` and `=` and percent-decodes each
    /// name and value once. `+` is kept as it is. A sequence that does not decode to UTF-8 is
    /// replaced, so the value fails its later check instead of the whole query.
    pub fn parse(raw: &str) -> Query {
        let pairs = raw
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                (decode(name), decode(value))
            })
            .collect();
        Query(pairs)
    }

    /// The first value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// A base64 value carried in the query: decoded once as every value is, then, as a defensive
    /// last step, any space mapped back to `+` (base64 has no spaces; a space there can only be
    /// a `+` that some proxy decoded as a form would).
    pub fn get_base64(&self, name: &str) -> Option<String> {
        self.get(name).map(|value| value.replace(' ', "+"))
    }
}

fn decode(text: &str) -> String {
    percent_decode_str(text).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_once_and_keeps_plus() {
        let query = Query::parse(
            "msg_signature=abc&timestamp=1409659813&nonce=1372623149&echostr=P9nAzCzyDtyTWESHep1vC5X9xho%2B%2FqYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp%2B4RPcs8TgAE7OaBO%2BFZXvnaqQ%3D%3D",
        );
        assert_eq!(query.get("timestamp"), Some("1409659813"));
        assert_eq!(
            query.get("echostr"),
            Some(
                "P9nAzCzyDtyTWESHep1vC5X9xho+/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ=="
            )
        );
        // A raw '+' is a '+', not a space; "%252B" decodes once to "%2B", not to '+'.
        let query = Query::parse("a=x+y&b=%252B&c");
        assert_eq!(query.get("a"), Some("x+y"));
        assert_eq!(query.get("b"), Some("%2B"));
        assert_eq!(query.get("c"), Some(""));
        assert_eq!(query.get("d"), None);
    }

    #[test]
    fn spaces_in_base64_values_become_plus_only_on_request() {
        let query = Query::parse("echostr=ab%20cd&nonce=a%20b");
        assert_eq!(query.get_base64("echostr").as_deref(), Some("ab+cd"));
        assert_eq!(query.get("nonce"), Some("a b"));
    }

    #[test]
    fn first_value_wins_and_bad_utf8_is_replaced() {
        let query = Query::parse("a=1&a=2&b=%FF");
        assert_eq!(query.get("a"), Some("1"));
        assert_eq!(query.get("b"), Some("\u{FFFD}"));
        assert_eq!(Query::parse(""), Query::default());
    }
}
