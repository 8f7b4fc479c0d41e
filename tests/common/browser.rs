//! A real headless Chromium driven through chromedriver (WebDriver) on loopback, for the tests
//! of what the console shows. Debian's `chromium` and `chromium-driver` provide both; without
//! them the browser tests are skipped, unless `KEFU_REQUIRE_CHROMIUM=1` (CI) makes that a
//! failure.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

/// The first of `candidates` that exists, or the one `env` names.
fn binary(env: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Some(PathBuf::from(path));
    }
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|path| path.is_file())
}

/// A headless Chromium session, with the chromedriver that runs it.
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and a headless Chromium with a fresh
    /// profile; `None` (with a note on stderr) when they are not installed and not required.
    pub async fn start() -> Option<Browser> {
        let chromium = binary(
            "KEFU_CHROMIUM",
            &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
        );
        let driver = binary("KEFU_CHROMEDRIVER", &["/usr/bin/chromedriver"]);
        let (Some(chromium), Some(driver)) = (chromium, driver) else {
            assert!(
                std::env::var("KEFU_REQUIRE_CHROMIUM").as_deref() != Ok("1"),
                "KEFU_REQUIRE_CHROMIUM=1 but chromium or chromedriver is missing: apt-get install chromium chromium-driver (or set KEFU_CHROMIUM and KEFU_CHROMEDRIVER)"
            );
            eprintln!(
                "SKIPPED: no chromium and chromedriver (apt-get install chromium chromium-driver)"
            );
            return None;
        };
        // The OS picks the port; chromedriver takes it a moment later.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        let mut driver = Command::new(driver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                let _ = driver.kill();
                panic!("chromedriver did not listen on 127.0.0.1:{port} within 20 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().unwrap();
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                // The closed network: no background connections, no update checks.
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await;
        let client = match client {
            Ok(client) => client,
            Err(error) => {
                let _ = driver.kill();
                panic!("chromium did not start under chromedriver: {error}");
            }
        };
        Some(Browser {
            client,
            driver,
            _profile: profile,
        })
    }

    /// The text of the first element `css` selects, once there is one (bounded wait). The
    /// console redraws itself while open, so an element found may be gone a moment later: the
    /// lookup is tried again then.
    pub async fn text_of(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(element) = self.client.find(Locator::Css(css)).await {
                if let Ok(text) = element.text().await {
                    return text;
                }
            }
            assert!(Instant::now() < deadline, "no {css} on the page");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Clicks the first element `css` selects, trying again while the page redraws (bounded).
    pub async fn click(&self, css: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(element) = self.client.find(Locator::Css(css)).await {
                if element.click().await.is_ok() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "nothing to click at {css}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the text of `css` satisfies `done`, and returns it (bounded).
    pub async fn until_text(&self, css: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = match self.client.find(Locator::Css(css)).await {
                Ok(element) => element.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if done(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{css} never matched; last text {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Ends the session (Chromium quits), then chromedriver.
    pub async fn stop(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Also after a failed assertion, so that no chromedriver outlives the test.
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
