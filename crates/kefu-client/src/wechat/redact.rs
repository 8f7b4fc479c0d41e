//! Keeping `access_token` out of every URL and text that is logged or returned (protocols.md
//! §9.4: it travels in the query string).

/// What stands for the token.
pub(crate) const REDACTED: &str = "<redacted>";

/// `text` with every `access_token=…` query value, and every occurrence of `token` itself,
/// replaced by `<redacted>`.
///
/// The parameter rule catches a token this process never held (echoed by a proxy, say); the
/// exact rule catches one that appears without its parameter name, also as Rust's `{:?}` or JSON
/// writes it (a vendor's echo quoted in a description escapes `"` and `\`, which the plain form
/// would no longer match).
pub(crate) fn redact(text: &str, token: Option<&str>) -> String {
    const PARAM: &str = "access_token=";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(PARAM) {
        let value = at + PARAM.len();
        out.push_str(&rest[..value]);
        out.push_str(REDACTED);
        let end = rest[value..]
            .find(|c: char| matches!(c, '&' | '#' | '"' | '\'' | '<' | '>') || c.is_whitespace())
            .map_or(rest.len(), |len| value + len);
        rest = &rest[end..];
    }
    out.push_str(rest);
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return out;
    };
    let debug = token.escape_debug().to_string();
    let json = serde_json::to_string(token).unwrap_or_default();
    let json = json
        .strip_prefix('"')
        .and_then(|quoted| quoted.strip_suffix('"'))
        .unwrap_or(token);
    [debug.as_str(), json, token]
        .into_iter()
        .fold(out, |text, form| text.replace(form, REDACTED))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_the_parameter_and_the_token() {
        assert_eq!(
            redact(
                "POST https://h/cgi-bin/message/custom/send?access_token=ABC_123-x failed",
                None
            ),
            "POST https://h/cgi-bin/message/custom/send?access_token=<redacted> failed"
        );
        assert_eq!(
            redact("/p?a=1&access_token=T1&b=2#f and access_token=T2", None),
            "/p?a=1&access_token=<redacted>&b=2#f and access_token=<redacted>"
        );
        assert_eq!(redact("access_token=", None), "access_token=<redacted>");
        assert_eq!(
            redact("token SECRET_T echoed", Some("SECRET_T")),
            "token <redacted> echoed"
        );
        assert_eq!(redact("nothing here", Some("")), "nothing here");
    }

    #[test]
    fn redacts_the_token_as_debug_and_json_escape_it() {
        let token = "TOK\"QUOTE\\BACK-é-secret";
        for text in [
            format!(
                "message {:?} from the vendor",
                format!("invalid {token} for app")
            ),
            format!("body {}", serde_json::json!({ "access_token": token })),
            format!("plain {token}"),
        ] {
            let redacted = redact(&text, Some(token));
            assert!(!redacted.contains("QUOTE"), "{redacted}");
            assert!(redacted.contains(REDACTED), "{redacted}");
        }
    }
}
