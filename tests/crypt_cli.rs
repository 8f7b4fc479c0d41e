//! `kefu-connector crypt`, driven as scripts drive it: arguments, stdin, stdout, stderr and the
//! exit status.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const OTHER_KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
const V1_ENCRYPT: &str = "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE=";
const V2_BODY: &str = r#"{"encrypt":"Q3stYC6hdFzMh9T8HCvyDPE2ieTdcQ/vBK1S4QECN+1Fx+GT1t8gA4DCfMvbFulM0rTHMLJnW441w3GjeO108LyFZ8jTAxMfK5b1fdwuN+xBl7jmWkVl4n9mhfPSsijlozW+htQhTQfbN6ErGS1+Ft1PsQ7n268Ksgo2YniXD5qF97Tz3yNNSgTOTtvnack7FOi0vauzJ+idP0vwgGao9dYj45Ua1mow9SOwlg3BpPd+Q1VoubHYINYOt5iOR3h6"}"#;
const V2_MSG: &str = "<xml><appid><![CDATA[wx0000000000000000]]></appid><openid><![CDATA[oUSER]]></openid><msg><![CDATA[hello]]></msg><channel>0</channel></xml>";

fn run(args: &[&str], stdin: &[u8]) -> Output {
    run_with(args, stdin, &[], None)
}

/// Runs the binary with `env` set over a clean `KEFU_DIALOGUE_*`, in `dir` if given.
fn run_with(
    args: &[&str],
    stdin: &[u8],
    env: &[(&str, &str)],
    dir: Option<&std::path::Path>,
) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kefu-connector"));
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let mut child = command
        .args(args)
        .env_remove("KEFU_DIALOGUE_TOKEN")
        .env_remove("KEFU_DIALOGUE_AES_KEY")
        .env_remove("KEFU_DIALOGUE_BOT_APPID")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .envs(env.iter().copied())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    // A usage error exits before reading stdin: the pipe may then be closed, which is no failure
    // of the test; the exit status and stderr tell what happened.
    let _ = child.stdin.take().expect("stdin is piped").write_all(stdin);
    child.wait_with_output().expect("the binary finishes")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn account(token: &str, key: &str, appid: &str) -> Vec<String> {
    ["--token", token, "--aes-key", key, "--bot-appid", appid]
        .map(String::from)
        .to_vec()
}

fn crypt(sub: &str, account: &[String], extra: &[&str], stdin: &[u8]) -> Output {
    let mut args = vec!["crypt", sub];
    args.extend(account.iter().map(String::as_str));
    args.extend_from_slice(extra);
    run(&args, stdin)
}

#[test]
fn encrypt_then_decrypt_round_trips_bytes_exactly() {
    let bot = account("T", KEY, "Gg8HejYTkUsEIlG");
    let message = "你好 😀\n<xml>]]></xml>\n\n".as_bytes();
    let encrypted = crypt("encrypt", &bot, &[], message);
    assert!(encrypted.status.success(), "{}", stderr(&encrypted));
    let json: serde_json::Value = serde_json::from_slice(&encrypted.stdout).unwrap();
    for key in ["encrypt", "msg_signature", "timestamp", "nonce"] {
        assert!(json[key].is_string(), "missing {key} in {json}");
    }

    // The JSON object that encrypt prints is itself a valid input of decrypt.
    let decrypted = crypt("decrypt", &bot, &[], &encrypted.stdout);
    assert!(decrypted.status.success(), "{}", stderr(&decrypted));
    assert_eq!(decrypted.stdout, message);

    // And its signature verifies.
    let signed = crypt(
        "decrypt",
        &bot,
        &[
            "--signature",
            json["msg_signature"].as_str().unwrap(),
            "--timestamp",
            json["timestamp"].as_str().unwrap(),
            "--nonce",
            json["nonce"].as_str().unwrap(),
        ],
        json["encrypt"].as_str().unwrap().as_bytes(),
    );
    assert!(signed.status.success(), "{}", stderr(&signed));
    assert_eq!(signed.stdout, message);
}

#[test]
fn encrypt_uses_the_given_timestamp_and_nonce() {
    let out = crypt(
        "encrypt",
        &account("T", KEY, "A"),
        &["--timestamp", "1700000000", "--nonce", "abc"],
        b"x",
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["timestamp"], "1700000000");
    assert_eq!(json["nonce"], "abc");
}

#[test]
fn decrypts_the_dialogue_sendmsg_body() {
    let out = crypt(
        "decrypt",
        &account("T", KEY, "Gg8HejYTkUsEIlG"),
        &[],
        V2_BODY.as_bytes(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, V2_MSG.as_bytes());
}

#[test]
fn decrypts_the_dialogue_callback_body() {
    let body = V2_BODY.replace("\"encrypt\"", "\"encrypted\"");
    let out = crypt(
        "decrypt",
        &account("T", KEY, "Gg8HejYTkUsEIlG"),
        &[],
        body.as_bytes(),
    );
    assert_eq!(out.stdout, V2_MSG.as_bytes());
}

#[test]
fn decrypts_an_xml_envelope_with_its_query_signature() {
    let envelope = format!(
        "<xml>\n  <ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>\n  <Encrypt><![CDATA[{V1_ENCRYPT}]]></Encrypt>\n</xml>\n"
    );
    let oa = account("spamtest", KEY, "wx2c2769f8efd9abc2");
    let query = [
        "--signature",
        "5d197aaffba7e9b25a30732f161a50dee96bd5fa",
        "--timestamp",
        "1409735669",
        "--nonce",
        "1320562132",
    ];
    let out = crypt("decrypt", &oa, &query, envelope.as_bytes());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        out.stdout
            .starts_with(b"<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]>")
    );
    assert!(out.stdout.ends_with(b"</xml>"), "no newline is added");

    let mut wrong = query;
    wrong[1] = "5d197aaffba7e9b25a30732f161a50dee96bd5fb";
    let out = crypt("decrypt", &oa, &wrong, envelope.as_bytes());
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    assert!(
        err.starts_with("error -40001 (ValidateSignature): "),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!err.contains("spamtest"), "the token never appears: {err}");
}

#[test]
fn each_failed_check_is_named_with_its_code() {
    let bot = account("T", KEY, "Gg8HejYTkUsEIlG");
    let cases: [(&[String], &[u8], &str); 5] = [
        (&bot, b"not base64!", "error -40010 (DecodeBase64)"),
        (&bot, b"QUJD", "error -40007 (DecryptAes)"),
        (
            &account("T", KEY, "wx0000000000000000"),
            V2_BODY.as_bytes(),
            "error -40005 (ValidateReceiveId)",
        ),
        (
            &account("T", &KEY[..40], "A"),
            V2_BODY.as_bytes(),
            "error -40004 (IllegalAesKey)",
        ),
        (
            &account("T", OTHER_KEY, "Gg8HejYTkUsEIlG"),
            V2_BODY.as_bytes(),
            "error -400",
        ),
    ];
    for (account, stdin, prefix) in cases {
        let out = crypt("decrypt", account, &[], stdin);
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert!(err.starts_with(prefix), "expected {prefix}, got {err}");
        assert!(!err.contains(KEY) && !err.contains(&KEY[..40]), "{err}");
    }
}

#[test]
fn any_appid_accepts_and_reports_the_receive_id() {
    let out = crypt(
        "decrypt",
        &account("T", KEY, "ignored"),
        &["--any-appid"],
        V2_BODY.as_bytes(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, V2_MSG.as_bytes());
    assert!(stderr(&out).contains("Gg8HejYTkUsEIlG"));
}

#[test]
fn sign_prints_the_msg_signature() {
    let out = run(
        &[
            "crypt",
            "sign",
            "--token",
            "spamtest",
            "--timestamp",
            "1409735669",
            "--nonce",
            "1320562132",
        ],
        format!("{V1_ENCRYPT}\n").as_bytes(),
    );
    assert!(out.status.success());
    assert_eq!(out.stdout, b"5d197aaffba7e9b25a30732f161a50dee96bd5fa\n");
}

#[test]
fn verify_url_keeps_a_plus_in_echostr() {
    // Find an echostr whose ciphertext contains '+', as WeCom sends it percent-encoded.
    let wecom = account("QDG6eK", OTHER_KEY, "wx5823bf96d3bd56c7");
    let (encrypt, signature) = (0..64)
        .find_map(|i| {
            let out = crypt(
                "encrypt",
                &wecom,
                &["--timestamp", "1409659589", "--nonce", "263014780"],
                format!("echo-{i}").as_bytes(),
            );
            let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let encrypt = json["encrypt"].as_str().unwrap().to_owned();
            encrypt
                .contains('+')
                .then(|| (encrypt, json["msg_signature"].as_str().unwrap().to_owned()))
        })
        .expect("some ciphertext holds a '+'");
    for echostr in [
        encrypt.clone(),
        encrypt
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D"),
        encrypt.replace('+', " "),
    ] {
        let out = crypt(
            "verify-url",
            &wecom,
            &[
                "--signature",
                &signature,
                "--timestamp",
                "1409659589",
                "--nonce",
                "263014780",
                "--echostr",
                &echostr,
            ],
            b"",
        );
        assert!(out.status.success(), "{echostr}: {}", stderr(&out));
        assert!(out.stdout.starts_with(b"echo-"));
    }
}

#[test]
fn usage_errors_exit_2_with_a_message() {
    let out = run(&["crypt", "decrypt", "--token", "T"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--aes-key"));

    let mut args = vec!["crypt", "decrypt"];
    let bot = account("T", KEY, "A");
    args.extend(bot.iter().map(String::as_str));
    args.extend(["--signature", "abc"]);
    let out = run(&args, b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--timestamp"), "{}", stderr(&out));

    let out = run(&["crypt", "frobnicate"], b"");
    assert_eq!(out.status.code(), Some(2));
}

/// `--any-appid` needs no receive-id at all.
#[test]
fn any_appid_needs_no_bot_appid() {
    let out = run(
        &[
            "crypt",
            "decrypt",
            "--token",
            "T",
            "--aes-key",
            KEY,
            "--any-appid",
        ],
        V2_BODY.as_bytes(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, V2_MSG.as_bytes());
}

/// `crypt` reads the settings `serve` reads: the KEFU_DIALOGUE_* variables and the dialogue
/// section of the config file (./kefu.toml by default), without demanding server.api_key.
#[test]
fn credentials_come_from_the_serve_settings() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("KEFU_DIALOGUE_TOKEN", "T"),
        ("KEFU_DIALOGUE_AES_KEY", KEY),
        ("KEFU_DIALOGUE_BOT_APPID", "Gg8HejYTkUsEIlG"),
    ];
    let from_env = run_with(
        &["crypt", "decrypt"],
        V2_BODY.as_bytes(),
        &env,
        Some(dir.path()),
    );
    assert!(from_env.status.success(), "{}", stderr(&from_env));
    assert_eq!(from_env.stdout, V2_MSG.as_bytes());

    let file = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[dialogue]\ntoken = \"T\"\naes_key = \"{KEY}\"\nbot_appid = \"Gg8HejYTkUsEIlG\"\n"
    );
    std::fs::write(dir.path().join("other.toml"), &file).unwrap();
    let from_file = run_with(
        &["crypt", "decrypt", "--config", "other.toml"],
        V2_BODY.as_bytes(),
        &[],
        Some(dir.path()),
    );
    assert!(from_file.status.success(), "{}", stderr(&from_file));
    assert_eq!(from_file.stdout, V2_MSG.as_bytes());

    // ./kefu.toml without --config, and the environment over the file.
    std::fs::write(
        dir.path().join("kefu.toml"),
        file.replace("\"T\"", "\"wrong\""),
    )
    .unwrap();
    let overridden = run_with(
        &["crypt", "decrypt"],
        V2_BODY.as_bytes(),
        &[("KEFU_DIALOGUE_TOKEN", "T")],
        Some(dir.path()),
    );
    assert!(overridden.status.success(), "{}", stderr(&overridden));
    let signed = run_with(
        &["crypt", "sign", "--timestamp", "1", "--nonce", "n"],
        b"abc",
        &[],
        Some(dir.path()),
    );
    let expected = run(
        &[
            "crypt",
            "sign",
            "--token",
            "wrong",
            "--timestamp",
            "1",
            "--nonce",
            "n",
        ],
        b"abc",
    );
    assert!(signed.status.success(), "{}", stderr(&signed));
    assert_eq!(signed.stdout, expected.stdout);
}

/// A missing credential is a configuration error (exit status 2) that says where to put it and
/// where it was looked for; the old receive-id flag is a usage error.
#[test]
fn a_missing_credential_is_named_with_exit_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_with(
        &["crypt", "encrypt", "--token", "T", "--aes-key", KEY],
        b"<xml/>",
        &[],
        Some(dir.path()),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    for expected in [
        "error: the bot APPID (the receive-id) is missing",
        "--bot-appid",
        "KEFU_DIALOGUE_BOT_APPID",
        "dialogue.bot_appid",
        "./kefu.toml does not exist",
    ] {
        assert!(err.contains(expected), "{expected} in {err}");
    }
    assert!(!err.contains(KEY), "{err}");

    let old = run_with(
        &[
            "crypt",
            "encrypt",
            "--token",
            "T",
            "--aes-key",
            KEY,
            "--appid",
            "A",
        ],
        b"<xml/>",
        &[],
        Some(dir.path()),
    );
    assert_eq!(old.status.code(), Some(2), "{}", stderr(&old));
    assert!(
        stderr(&old).contains("--appid is now --bot-appid"),
        "{}",
        stderr(&old)
    );
}
