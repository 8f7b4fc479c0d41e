//! Helpers the sandbox's end-to-end tests share: a plain HTTP exchange over loopback, and a
//! spawned binary's startup line and SIGTERM stop.

use std::io::{BufRead as _, BufReader, Read as _};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;

/// `(status, body)` of one exchange; `Err` when the connection ended without an answer.
pub async fn exchange(
    method: Method,
    url: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<(u16, String), String> {
    let headers: Vec<(&str, &str)> = content_type
        .map(|content_type| ("content-type", content_type))
        .into_iter()
        .collect();
    exchange_with(method, url, &headers, body).await
}

/// [`exchange`] with any headers.
pub async fn exchange_with(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, String), String> {
    let http = HttpClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::copy_from_slice(body)))
        .map_err(|e| e.to_string())?;
    let response = http.request(request).await.map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok((status, String::from_utf8(body.to_bytes().to_vec()).unwrap()))
}

/// Starts `program` with `args`, logging at `log_level`, with piped stdout and stderr; the
/// Dialogue settings of the environment are removed, so only `args` configure it.
pub fn spawn_logging(program: &str, args: &[&str], log_level: &str) -> Child {
    std::process::Command::new(program)
        .args(args)
        .env_remove("KEFU_DIALOGUE_TOKEN")
        .env_remove("KEFU_DIALOGUE_AES_KEY")
        .env_remove("KEFU_DIALOGUE_BOT_APPID")
        .env("RUST_LOG", log_level)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts")
}

/// The value of `name=` in a startup line.
pub fn startup_field(line: &str, name: &str) -> String {
    let prefix = format!("{name}=");
    line.split_whitespace()
        .find_map(|part| part.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in {line:?}"))
        .to_owned()
}

/// The first line the child printed on its piped stdout: its startup line.
pub fn startup_line(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("a piped stdout"))
        .read_line(&mut line)
        .unwrap();
    line
}

/// Sends the child SIGTERM and waits for it to exit; a child still running after ten seconds
/// fails the test.
pub fn terminate(child: &mut Child) -> ExitStatus {
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the sandbox did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// All the child wrote on its piped stderr.
pub fn stderr_of(child: &mut Child) -> String {
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("a piped stderr")
        .read_to_string(&mut stderr)
        .unwrap();
    stderr
}
