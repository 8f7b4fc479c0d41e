//! Benchmarks of the WXBizMsgCrypt hot path, with the lower bound measured in the same run.
//!
//! `cargo bench -p wxbizmsgcrypt --bench crypto` measures, for messages of 64 B, 512 B, 4 KiB and
//! 64 KiB:
//!
//! * `hot_path`: `encrypt_and_sign` and `verify_and_decrypt`, as a caller uses them;
//! * `reuse`: the same with caller-owned buffers (`encrypt_into` + `sign`,
//!   `verify_signature` + `decrypt_into`), which allocate nothing;
//! * `bound`: the three primitive steps on the exact byte counts of each size, in process:
//!   AES-256-CBC (the `aes`/`cbc` crates), SHA-1 (the `sha1` crate) and base64 (`base64-simd`).
//!
//! It then runs `openssl speed` on the same byte counts and prints a table: our time, the bound
//! (for each step the faster of `openssl speed` and the in-process crate) and the ratio.
//! See benches/README.md.
//!
//! Set `WXBIZMSGCRYPT_BENCH_JSON=<path>` to also write the table as JSON (used by
//! benches/peers/run.sh).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aes::cipher::inout::InOutBuf;
use aes::cipher::{BlockDecryptMut as _, BlockEncryptMut as _, InnerIvInit as _, KeyInit as _};
use aes::{Aes256Dec, Aes256Enc};
use criterion::{BenchmarkId, Criterion, Throughput};
use sha1::{Digest as _, Sha1};
use wxbizmsgcrypt::{MsgCrypt, PAD_BLOCK, RANDOM_LEN};

/// Message sizes, in bytes of plaintext message.
const SIZES: [usize; 4] = [64, 512, 4096, 65536];
/// Samples per benchmark; the table uses the fastest (see [`fastest`]).
const SAMPLES: usize = 30;

const TOKEN: &str = "RMNlACHlV5ThzfRlVS4D4";
const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const RECEIVE_ID: &str = "Gg8HejYTkUsEIlG";
const TIMESTAMP: &str = "1700000000";
const NONCE: &str = "1514711492";

/// Per-call times (ns) of every sample, by benchmark id, in the order criterion took them.
static RECORDED: Mutex<BTreeMap<String, Vec<f64>>> = Mutex::new(BTreeMap::new());

/// Times `f` for criterion and records the per-call time of each sample for the table.
fn timed<O>(b: &mut criterion::Bencher<'_>, id: &str, mut f: impl FnMut() -> O) {
    b.iter_custom(|iters| {
        let start = Instant::now();
        for _ in 0..iters {
            black_box(f());
        }
        let elapsed = start.elapsed();
        let per_call = elapsed.as_nanos() as f64 / iters.max(1) as f64;
        if let Ok(mut recorded) = RECORDED.lock() {
            recorded.entry(id.to_owned()).or_default().push(per_call);
        }
        elapsed
    });
}

/// Per-call time (ns) of the fastest of the last `SAMPLES` samples (the warm-up ones come first).
///
/// Each sample is the mean over many consecutive calls. Other processes only ever add time, so
/// on a shared machine the fastest sample is the steadiest estimate of the code's own cost (the
/// median moves with the load); every figure in the table, the bound's and the peers' included,
/// is taken this way.
fn fastest(id: &str) -> Option<f64> {
    let recorded = RECORDED.lock().ok()?;
    let samples = recorded.get(id)?;
    samples[samples.len().saturating_sub(SAMPLES)..]
        .iter()
        .copied()
        .min_by(f64::total_cmp)
}

/// A message of exactly `len` bytes of XML-like ASCII.
fn message(len: usize) -> Vec<u8> {
    b"<xml><openid><![CDATA[oUSER]]></openid><msg><![CDATA[hello from the desk]]></msg></xml>"
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

/// The exact byte counts each step handles for a message of `len` bytes.
#[derive(Clone, Copy)]
struct Shape {
    msg: usize,
    /// Padded plaintext = ciphertext length.
    padded: usize,
    /// Base64 text length.
    text: usize,
    /// SHA-1 input: token, timestamp, nonce and the base64 text.
    sign_input: usize,
}

impl Shape {
    fn of(msg: usize) -> Shape {
        let framed = RANDOM_LEN + 4 + msg + RECEIVE_ID.len();
        let padded = framed + (PAD_BLOCK - framed % PAD_BLOCK);
        let text = padded.div_ceil(3) * 4;
        Shape {
            msg,
            padded,
            text,
            sign_input: TOKEN.len() + TIMESTAMP.len() + NONCE.len() + text,
        }
    }
}

fn crypt() -> MsgCrypt {
    MsgCrypt::new(TOKEN, AES_KEY, RECEIVE_ID).expect("valid key")
}

fn bench_hot_path(c: &mut Criterion) {
    let crypt = crypt();
    let mut group = c.benchmark_group("hot_path");
    for shape in SIZES.map(Shape::of) {
        let msg = message(shape.msg);
        let sealed = crypt
            .encrypt_and_sign(&msg, TIMESTAMP, NONCE)
            .expect("encrypts");
        assert_eq!(sealed.encrypt.len(), shape.text);
        group.throughput(Throughput::Bytes(shape.msg as u64));
        let id = format!("hot_path/encrypt_and_sign/{}", shape.msg);
        group.bench_function(BenchmarkId::new("encrypt_and_sign", shape.msg), |b| {
            timed(b, &id, || {
                crypt.encrypt_and_sign(black_box(&msg), TIMESTAMP, NONCE)
            })
        });
        let signature = sealed.msg_signature.as_str();
        let id = format!("hot_path/verify_and_decrypt/{}", shape.msg);
        group.bench_function(BenchmarkId::new("verify_and_decrypt", shape.msg), |b| {
            timed(b, &id, || {
                crypt
                    .verify_and_decrypt(signature, TIMESTAMP, NONCE, black_box(&sealed.encrypt))
                    .expect("decrypts")
            })
        });
    }
    group.finish();
}

fn bench_reuse(c: &mut Criterion) {
    let crypt = crypt();
    let mut group = c.benchmark_group("reuse");
    for shape in SIZES.map(Shape::of) {
        let msg = message(shape.msg);
        let sealed = crypt
            .encrypt_and_sign(&msg, TIMESTAMP, NONCE)
            .expect("encrypts");
        group.throughput(Throughput::Bytes(shape.msg as u64));
        let mut out = String::new();
        let id = format!("reuse/encrypt_into+sign/{}", shape.msg);
        group.bench_function(BenchmarkId::new("encrypt_into+sign", shape.msg), |b| {
            timed(b, &id, || {
                crypt
                    .encrypt_into(black_box(&msg), &mut out)
                    .expect("encrypts");
                crypt.sign(TIMESTAMP, NONCE, &out)
            })
        });
        let signature = sealed.msg_signature.as_str();
        let mut buf = Vec::new();
        let id = format!("reuse/verify+decrypt_into/{}", shape.msg);
        group.bench_function(BenchmarkId::new("verify+decrypt_into", shape.msg), |b| {
            timed(b, &id, || {
                let encrypt = black_box(sealed.encrypt.as_str());
                crypt
                    .verify_signature(signature, TIMESTAMP, NONCE, encrypt)
                    .expect("verifies");
                crypt
                    .decrypt_into(encrypt, &mut buf)
                    .expect("decrypts")
                    .message
                    .len()
            })
        });
    }
    group.finish();
}

fn bench_bound(c: &mut Criterion) {
    let key_bytes = [0x5au8; 32];
    let iv = aes::Block::clone_from_slice(&key_bytes[..16]);
    let encryptor = Aes256Enc::new(&key_bytes.into());
    let decryptor = Aes256Dec::new(&key_bytes.into());
    let mut group = c.benchmark_group("bound");
    for shape in SIZES.map(Shape::of) {
        let mut data = message(shape.padded);
        // One CBC chain runs through all the iterations, as in `openssl speed`: each call starts
        // from the last ciphertext block of the one before. Independent calls would let the CPU
        // overlap the end of one chain with the start of the next, and time CBC encryption of a
        // short message below the latency of its own chain (about 86 ns against 127 for 128 B).
        let mut encryptor = cbc::Encryptor::<&Aes256Enc>::inner_iv_init(&encryptor, &iv);
        let id = format!("bound/aes256cbc_encrypt/{}", shape.msg);
        group.throughput(Throughput::Bytes(shape.padded as u64));
        group.bench_function(BenchmarkId::new("aes256cbc_encrypt", shape.padded), |b| {
            timed(b, &id, || {
                let (blocks, _) = InOutBuf::from(black_box(&mut data[..])).into_chunks();
                encryptor.encrypt_blocks_inout_mut(blocks);
            })
        });
        let mut decryptor = cbc::Decryptor::<&Aes256Dec>::inner_iv_init(&decryptor, &iv);
        let id = format!("bound/aes256cbc_decrypt/{}", shape.msg);
        group.bench_function(BenchmarkId::new("aes256cbc_decrypt", shape.padded), |b| {
            timed(b, &id, || {
                let (blocks, _) = InOutBuf::from(black_box(&mut data[..])).into_chunks();
                decryptor.decrypt_blocks_inout_mut(blocks);
            })
        });

        let mut text = vec![0u8; shape.text];
        let id = format!("bound/base64_encode/{}", shape.msg);
        group.bench_function(BenchmarkId::new("base64_encode", shape.padded), |b| {
            timed(b, &id, || {
                base64_simd::STANDARD
                    .encode(black_box(&data), base64_simd::Out::from_slice(&mut text))
                    .len()
            })
        });
        let mut decoded = vec![0u8; shape.padded];
        let id = format!("bound/base64_decode/{}", shape.msg);
        group.throughput(Throughput::Bytes(shape.text as u64));
        group.bench_function(BenchmarkId::new("base64_decode", shape.text), |b| {
            timed(b, &id, || {
                base64_simd::STANDARD
                    .decode(black_box(&text), base64_simd::Out::from_slice(&mut decoded))
                    .map(|d| d.len())
            })
        });

        let sign_input = message(shape.sign_input);
        let id = format!("bound/sha1/{}", shape.msg);
        group.throughput(Throughput::Bytes(shape.sign_input as u64));
        group.bench_function(BenchmarkId::new("sha1", shape.sign_input), |b| {
            timed(b, &id, || Sha1::digest(black_box(&sign_input)))
        });
    }
    group.finish();
}

/// Per-call time (ns) of `openssl speed -evp <alg>` on buffers of exactly `bytes` bytes: the best
/// of three one-second runs, as the other figures are the fastest of their samples.
fn openssl_speed(alg: &str, decrypt: bool, bytes: usize) -> Option<f64> {
    (0..3)
        .filter_map(|_| openssl_speed_once(alg, decrypt, bytes))
        .min_by(f64::total_cmp)
}

fn openssl_speed_once(alg: &str, decrypt: bool, bytes: usize) -> Option<f64> {
    let mut command = Command::new("openssl");
    command.args([
        "speed",
        "-mr",
        "-seconds",
        "1",
        "-bytes",
        &bytes.to_string(),
    ]);
    if decrypt {
        command.arg("-decrypt");
    }
    let output = command.args(["-evp", alg]).output().ok()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    // "+F:<n>:<name>:<bytes per second>"
    let rate: f64 = stdout
        .lines()
        .find(|line| line.starts_with("+F:"))?
        .rsplit(':')
        .next()?
        .trim()
        .parse()
        .ok()?;
    (rate > 0.0).then(|| bytes as f64 / rate * 1e9)
}

fn openssl_version() -> Option<String> {
    let output = Command::new("openssl").arg("version").output().ok()?;
    Some(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// One primitive step: the in-process crate's time, `openssl speed`'s, and the faster one.
#[derive(Clone, Copy)]
struct Step {
    bytes: usize,
    crate_ns: Option<f64>,
    openssl_ns: Option<f64>,
}

impl Step {
    fn best(&self) -> Option<f64> {
        match (self.crate_ns, self.openssl_ns) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

struct Row {
    shape: Shape,
    encrypt_and_sign: Option<f64>,
    verify_and_decrypt: Option<f64>,
    encrypt_into_sign: Option<f64>,
    verify_decrypt_into: Option<f64>,
    aes_encrypt: Step,
    aes_decrypt: Step,
    sha1: Step,
    base64_encode: Step,
    base64_decode: Step,
}

impl Row {
    fn encrypt_bound(&self) -> Option<f64> {
        Some(self.aes_encrypt.best()? + self.sha1.best()? + self.base64_encode.best()?)
    }

    fn decrypt_bound(&self) -> Option<f64> {
        Some(self.aes_decrypt.best()? + self.sha1.best()? + self.base64_decode.best()?)
    }
}

fn collect_rows(with_openssl: bool) -> Vec<Row> {
    let speed = |alg: &str, decrypt: bool, bytes: usize| {
        if with_openssl {
            openssl_speed(alg, decrypt, bytes)
        } else {
            None
        }
    };
    SIZES
        .map(Shape::of)
        .into_iter()
        .map(|shape| {
            let m = |name: &str| fastest(&format!("{name}/{}", shape.msg));
            Row {
                shape,
                encrypt_and_sign: m("hot_path/encrypt_and_sign"),
                verify_and_decrypt: m("hot_path/verify_and_decrypt"),
                encrypt_into_sign: m("reuse/encrypt_into+sign"),
                verify_decrypt_into: m("reuse/verify+decrypt_into"),
                aes_encrypt: Step {
                    bytes: shape.padded,
                    crate_ns: m("bound/aes256cbc_encrypt"),
                    openssl_ns: speed("aes-256-cbc", false, shape.padded),
                },
                aes_decrypt: Step {
                    bytes: shape.padded,
                    crate_ns: m("bound/aes256cbc_decrypt"),
                    openssl_ns: speed("aes-256-cbc", true, shape.padded),
                },
                sha1: Step {
                    bytes: shape.sign_input,
                    crate_ns: m("bound/sha1"),
                    openssl_ns: speed("sha1", false, shape.sign_input),
                },
                base64_encode: Step {
                    bytes: shape.padded,
                    crate_ns: m("bound/base64_encode"),
                    openssl_ns: None,
                },
                base64_decode: Step {
                    bytes: shape.text,
                    crate_ns: m("bound/base64_decode"),
                    openssl_ns: None,
                },
            }
        })
        .collect()
}

fn us(ns: Option<f64>) -> String {
    match ns {
        Some(ns) if ns < 10_000.0 => format!("{:.2} µs", ns / 1000.0),
        Some(ns) => format!("{:.1} µs", ns / 1000.0),
        None => "—".to_owned(),
    }
}

fn ratio(ours: Option<f64>, bound: Option<f64>) -> String {
    match (ours, bound) {
        (Some(ours), Some(bound)) if bound > 0.0 => format!("{:.2}×", ours / bound),
        _ => "—".to_owned(),
    }
}

fn size_label(bytes: usize) -> String {
    if bytes >= 1024 && bytes % 1024 == 0 {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} B")
    }
}

fn print_table(rows: &[Row]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| message | encrypt_and_sign | bound | ratio | verify_and_decrypt | bound | ratio |"
    );
    let _ = writeln!(t, "|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} |",
            size_label(row.shape.msg),
            us(row.encrypt_and_sign),
            us(row.encrypt_bound()),
            ratio(row.encrypt_and_sign, row.encrypt_bound()),
            us(row.verify_and_decrypt),
            us(row.decrypt_bound()),
            ratio(row.verify_and_decrypt, row.decrypt_bound()),
        );
    }
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "With caller-owned buffers (no allocation): encrypt_into + sign, verify_signature + decrypt_into"
    );
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "| message | encrypt_into + sign | ratio | verify + decrypt_into | ratio |"
    );
    let _ = writeln!(t, "|---:|---:|---:|---:|---:|");
    for row in rows {
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} |",
            size_label(row.shape.msg),
            us(row.encrypt_into_sign),
            ratio(row.encrypt_into_sign, row.encrypt_bound()),
            us(row.verify_decrypt_into),
            ratio(row.verify_decrypt_into, row.decrypt_bound()),
        );
    }
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "Bound steps, per call: in-process crate / `openssl speed` (the faster one counts)"
    );
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "| message | AES-256-CBC encrypt | AES-256-CBC decrypt | SHA-1 | base64 encode | base64 decode |"
    );
    let _ = writeln!(t, "|---:|---:|---:|---:|---:|---:|");
    let step = |s: &Step| {
        format!(
            "{} B: {} / {}",
            s.bytes,
            us(s.crate_ns),
            match s.openssl_ns {
                Some(ns) => us(Some(ns)),
                None => "—".to_owned(),
            }
        )
    };
    for row in rows {
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} |",
            size_label(row.shape.msg),
            step(&row.aes_encrypt),
            step(&row.aes_decrypt),
            step(&row.sha1),
            step(&row.base64_encode),
            step(&row.base64_decode),
        );
    }
    t
}

fn json(rows: &[Row], openssl: &str) -> String {
    let num = |v: Option<f64>| v.map_or("null".to_owned(), |v| format!("{v:.1}"));
    let rows: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{{\"size\":{},\"encrypt_and_sign_ns\":{},\"encrypt_bound_ns\":{},\"verify_and_decrypt_ns\":{},\"decrypt_bound_ns\":{}}}",
                r.shape.msg,
                num(r.encrypt_and_sign),
                num(r.encrypt_bound()),
                num(r.verify_and_decrypt),
                num(r.decrypt_bound()),
            )
        })
        .collect();
    format!(
        "{{\"openssl\":{:?},\"rows\":[{}]}}\n",
        openssl,
        rows.join(",")
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes --bench; `cargo test --benches` runs each benchmark once, untimed.
    let benchmarking = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--list");
    let mut criterion = Criterion::default()
        .sample_size(SAMPLES)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500))
        .configure_from_args();
    bench_hot_path(&mut criterion);
    bench_reuse(&mut criterion);
    bench_bound(&mut criterion);
    criterion.final_summary();
    if !benchmarking {
        return;
    }

    let openssl = openssl_version();
    let rows = collect_rows(openssl.is_some());
    let table = print_table(&rows);
    println!();
    println!(
        "== WXBizMsgCrypt hot path vs the lower bound (per call, fastest of {SAMPLES} samples) =="
    );
    println!(
        "openssl: {}",
        openssl
            .as_deref()
            .unwrap_or("not found (bound from the crates only)")
    );
    println!();
    print!("{table}");
    if let Some(path) = std::env::var_os("WXBIZMSGCRYPT_BENCH_JSON") {
        let openssl = openssl.unwrap_or_default();
        if let Err(e) = std::fs::write(&path, json(&rows, &openssl)) {
            eprintln!("cannot write {}: {e}", path.to_string_lossy());
        }
    }
}
