//! The HTTP/1.1 wire of the loopback fakes: one request read off a connection, and what the fake
//! does with it: a JSON answer, a close, or a stall.

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One request as read off the wire.
pub struct Request {
    pub method: String,
    /// The request target: the path and its query.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The value of the header `name` (any case) among `headers`.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The next request on the connection; `None` when the peer closed it first.
pub async fn read_request(stream: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        if stream.read_line(&mut header).await.unwrap_or(0) == 0 {
            return None;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    let len = header(&headers, "content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    stream.read_exact(&mut body).await.ok()?;
    Some(Request {
        method,
        target,
        headers,
        body,
    })
}

/// What a fake does with a request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Answer with this status and JSON body.
    Json(u16, String),
    /// Read the request, then close without answering.
    Close,
    /// Read the request, then never answer.
    Stall,
}

/// Carries out `reply` on the connection, the JSON labelled `content_type`; `false` when the
/// connection is over.
pub async fn reply(stream: &mut TcpStream, reply: Reply, content_type: &str) -> bool {
    match reply {
        Reply::Json(status, body) => {
            let head = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).await.is_ok()
                && stream.write_all(body.as_bytes()).await.is_ok()
        }
        Reply::Close => false,
        Reply::Stall => {
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            false
        }
    }
}
