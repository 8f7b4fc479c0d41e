//! The console's files, embedded in the binary: the login page, the page shell (which carries
//! the session's CSRF token), its script and its style sheet. Nothing is built at compile time
//! and nothing is fetched from elsewhere.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use super::LoggedIn;

const SHELL: &str = include_str!("assets/console.html");
const LOGIN: &str = include_str!("assets/login.html");
const SCRIPT: &str = include_str!("assets/console.js");
const STYLE: &str = include_str!("assets/console.css");

/// `text` with the five characters that matter in HTML escaped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `GET /console`: the page, with the session's CSRF token and operator in its `<meta>` tags.
pub(super) async fn shell(axum::Extension(session): LoggedIn) -> Response {
    Html(
        SHELL
            .replace("{{csrf}}", &escape(&session.csrf))
            .replace("{{operator}}", &escape(&session.operator())),
    )
    .into_response()
}

/// The login page with `message` (empty: none) and `status`.
pub(super) fn login_page(status: StatusCode, message: &str) -> Response {
    (status, Html(LOGIN.replace("{{message}}", &escape(message)))).into_response()
}

/// `GET /console/assets/{file}`: the script or the style sheet.
pub(super) async fn file(Path(file): Path<String>) -> Response {
    let (body, content_type) = match file.as_str() {
        "console.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "console.css" => (STYLE, "text/css; charset=utf-8"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
    }

    #[test]
    fn the_pages_have_no_inline_script_or_style() {
        for page in [SHELL, LOGIN] {
            for forbidden in ["<script>", "onclick", "onload", "style=", "<style"] {
                assert!(!page.contains(forbidden), "{forbidden} in a page");
            }
        }
        assert!(SHELL.contains("<script src=\"/console/assets/console.js\" defer></script>"));
    }
}
