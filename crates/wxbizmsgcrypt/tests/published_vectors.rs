//! Interoperability with the published ciphertexts of Tencent's official samples and of the
//! established SDKs (tests/vectors/published.json, with provenance for each vector): every one
//! decrypts, verifies, and re-encrypts byte for byte with its original random prefix, so ciphertext
//! from them decrypts here and ours decrypts there.

use serde::Deserialize;
use wxbizmsgcrypt::{MsgCrypt, sign_message};

#[derive(Deserialize)]
struct Published {
    positive: Vec<Positive>,
    negative: Vec<Negative>,
    signature_only: Vec<SignatureOnly>,
}

#[derive(Deserialize)]
struct Positive {
    name: String,
    token: String,
    encoding_aes_key: String,
    receiveid: String,
    timestamp: String,
    nonce: String,
    msg_signature: String,
    encrypt: String,
    plaintext: String,
    random_hex: String,
    pad_len: usize,
}

#[derive(Deserialize)]
struct Negative {
    name: String,
    token: String,
    encoding_aes_key: String,
    receiveid: String,
    timestamp: String,
    nonce: String,
    msg_signature: String,
    encrypt: String,
    expected_error_code: i32,
}

#[derive(Deserialize)]
struct SignatureOnly {
    name: String,
    token: String,
    timestamp: String,
    nonce: String,
    encrypt: String,
    msg_signature: String,
    must_match: bool,
    utf8_msg_signature: Option<String>,
}

fn published() -> Published {
    serde_json::from_str(include_str!("vectors/published.json")).expect("valid vector file")
}

/// Every vector natively; under Miri, which interprets every AES round and looks for undefined
/// behaviour (the same code runs for each vector), every fifth, pads on both sides of 16 included.
fn sample<T>(vectors: Vec<T>) -> Vec<T> {
    if cfg!(miri) {
        vectors.into_iter().step_by(5).collect()
    } else {
        vectors
    }
}

#[test]
fn published_ciphertexts_decrypt_verify_and_reencrypt() {
    let vectors = published().positive;
    assert!(vectors.len() >= 19);
    let mut pads = std::collections::BTreeSet::new();
    for v in sample(vectors) {
        let crypt = MsgCrypt::new(&*v.token, &v.encoding_aes_key, v.receiveid.as_bytes())
            .unwrap_or_else(|e| panic!("{}: {e}", v.name));
        let plain = crypt
            .verify_and_decrypt(&v.msg_signature, &v.timestamp, &v.nonce, &v.encrypt)
            .unwrap_or_else(|e| panic!("{}: {e}", v.name));
        assert_eq!(plain.message(), v.plaintext.as_bytes(), "{}", v.name);
        assert_eq!(hex::encode(plain.random()), v.random_hex, "{}", v.name);

        let random: [u8; 16] = hex::decode(&v.random_hex).unwrap().try_into().unwrap();
        let ours = crypt
            .encrypt_with_random(&random, v.plaintext.as_bytes())
            .unwrap();
        assert_eq!(ours, v.encrypt, "{}: re-encryption differs", v.name);
        assert_eq!(
            sign_message(&v.token, &v.timestamp, &v.nonce, &ours).as_str(),
            v.msg_signature,
            "{}",
            v.name
        );
        pads.insert(v.pad_len);
    }
    // The set covers pads on both sides of 16, where 16-byte PKCS#7 decoders break.
    assert!(pads.iter().any(|&p| p > 16), "{pads:?}");
    assert!(pads.iter().any(|&p| p < 16), "{pads:?}");
}

#[test]
fn published_negative_vectors_fail_with_their_official_code() {
    for v in published().negative {
        let crypt = MsgCrypt::new(&*v.token, &v.encoding_aes_key, v.receiveid.as_bytes()).unwrap();
        let err = crypt
            .verify_and_decrypt(&v.msg_signature, &v.timestamp, &v.nonce, &v.encrypt)
            .expect_err(&v.name);
        assert_eq!(err.code(), v.expected_error_code, "{}: {err}", v.name);
    }
}

#[test]
fn published_signatures() {
    for v in published().signature_only {
        let ours = sign_message(&v.token, &v.timestamp, &v.nonce, &v.encrypt);
        if v.must_match {
            assert_eq!(ours.as_str(), v.msg_signature, "{}", v.name);
        } else {
            // Tencent's C# sample hashes non-ASCII as '?'; we hash UTF-8 as the platform does.
            assert_ne!(ours.as_str(), v.msg_signature, "{}", v.name);
            assert_eq!(
                Some(ours.as_str()),
                v.utf8_msg_signature.as_deref(),
                "{}",
                v.name
            );
        }
    }
}
