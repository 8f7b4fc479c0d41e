//! WeChat's WXBizMsgCrypt message encryption (消息加解密), strict and sans-IO.
//!
//! The scheme is shared by every WeChat callback (Official Account, Mini Program, WeCom) and by the
//! Dialogue Open Platform (微信对话开放平台):
//!
//! ```text
//! FullStr = random16 ‖ u32be(len(msg)) ‖ msg ‖ receive_id
//! Encrypt = base64(AES-256-CBC(key, iv = key[..16], PKCS#7-pad-to-32(FullStr)))
//! msg_signature = hex(SHA1(sort(token, timestamp, nonce, Encrypt)))
//! ```
//!
//! This crate differs from the established SDKs where they are lenient:
//!
//! * the padding is checked strictly (1..=32, every pad byte) and in constant time;
//! * the receive-id is checked by default, in constant time, and accepting any id is an explicit
//!   opt-in ([`MsgCrypt::decrypt_any_receive_id`]);
//! * signatures are compared in constant time;
//! * the ciphertext must be canonical base64, while the EncodingAESKey may carry the non-zero
//!   trailing bits that most real keys have;
//! * no input can panic, and each failure is its own [`Error`] variant with its official code.
//!
//! It performs no I/O and knows nothing of XML or JSON: the envelopes live in `kefu-payload`.
//!
//! ```
//! use wxbizmsgcrypt::MsgCrypt;
//!
//! let crypt = MsgCrypt::new("token", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "Gg8HejYTkUsEIlG")?;
//! let sealed = crypt.encrypt_and_sign(b"<xml><msg>hi</msg></xml>", "1700000000", "nonce")?;
//! let plain = crypt.verify_and_decrypt(
//!     sealed.msg_signature.as_str(), "1700000000", "nonce", &sealed.encrypt)?;
//! assert_eq!(plain.message(), b"<xml><msg>hi</msg></xml>");
//! # Ok::<(), wxbizmsgcrypt::Error>(())
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
#![deny(missing_docs)]

mod b64;
mod error;
mod key;
mod seal;
mod signature;

use core::fmt;
use core::ops::Range;

use aes::Aes256Dec;
use aes::cipher::block_padding::NoPadding;
use aes::cipher::{BlockDecryptMut, InnerIvInit};
use rand::RngCore as _;
// The unit tests build ciphertexts by hand with these.
#[cfg(test)]
use aes::Aes256Enc;
#[cfg(test)]
use aes::cipher::BlockEncryptMut;
#[cfg(test)]
use base64::{Engine as _, engine::general_purpose::STANDARD};

pub use error::{Base64Error, Error, ErrorCode, SignatureKind};
pub use key::AesKey;
pub use signature::{Signature, sign_message, sign_plain, verify_message, verify_plain};

/// The block size of WeChat's PKCS#7 padding: 32 bytes, not AES's 16.
pub const PAD_BLOCK: usize = 32;
/// Length of the random prefix of every plaintext.
pub const RANDOM_LEN: usize = 16;
/// Random prefix plus the 4-byte big-endian message length.
const HEADER_LEN: usize = RANDOM_LEN + 4;

/// One account's WXBizMsgCrypt: the token, the expanded AES key and the expected receive-id.
///
/// The key schedule is expanded once, at construction. The value is immutable, cheap to share
/// behind an `Arc`, and safe to use from many threads at once.
///
/// Its `Debug` output shows the receive-id only; the token and the key never appear.
#[derive(Clone)]
pub struct MsgCrypt {
    token: Box<str>,
    key: AesKey,
    receive_id: Box<[u8]>,
}

impl fmt::Debug for MsgCrypt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MsgCrypt")
            .field("token", &"<redacted>")
            .field("key", &"<redacted>")
            .field("receive_id", &String::from_utf8_lossy(&self.receive_id))
            .finish()
    }
}

/// A ciphertext with its `msg_signature`, ready for an XML or JSON reply envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The base64 ciphertext (`Encrypt`).
    pub encrypt: String,
    /// SHA-1 over the sorted token, timestamp, nonce and `encrypt`.
    pub msg_signature: Signature,
}

/// A decrypted plaintext: the message and the receive-id that trailed it, without copying them
/// out of the decryption buffer.
#[derive(Clone, PartialEq, Eq)]
pub struct Plaintext {
    buf: Vec<u8>,
    message: Range<usize>,
    receive_id: Range<usize>,
}

impl Plaintext {
    /// The message bytes (usually UTF-8 XML or JSON).
    pub fn message(&self) -> &[u8] {
        self.buf.get(self.message.clone()).unwrap_or_default()
    }

    /// The receive-id that trailed the message.
    pub fn receive_id(&self) -> &[u8] {
        self.buf.get(self.receive_id.clone()).unwrap_or_default()
    }

    /// The 16-byte random prefix the sender chose.
    pub fn random(&self) -> &[u8] {
        self.buf.get(..RANDOM_LEN).unwrap_or_default()
    }

    /// The message, keeping the allocation of the decryption buffer.
    pub fn into_message(mut self) -> Vec<u8> {
        self.buf.truncate(self.message.end);
        self.buf.drain(..self.message.start);
        self.buf
    }
}

impl fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plaintext")
            .field("message", &String::from_utf8_lossy(self.message()))
            .field("receive_id", &String::from_utf8_lossy(self.receive_id()))
            .finish()
    }
}

/// A plaintext borrowed from a caller's buffer, as returned by [`MsgCrypt::decrypt_into`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decrypted<'a> {
    /// The message bytes.
    pub message: &'a [u8],
    /// The receive-id that trailed the message.
    pub receive_id: &'a [u8],
}

/// The sizes of one message's framed plaintext and of its ciphertext text.
struct Layout {
    /// The message length, for the length field.
    msg_len: u32,
    /// PKCS#7 pad length, 1..=32.
    pad: usize,
    /// Padded plaintext length, which is also the ciphertext length.
    padded: usize,
    /// Base64 text length.
    encoded: usize,
}

impl Layout {
    fn of(msg: &[u8], receive_id_len: usize) -> Result<Layout, Error> {
        let msg_len =
            u32::try_from(msg.len()).map_err(|_| Error::MessageTooLong { len: msg.len() })?;
        let framed = HEADER_LEN + msg.len() + receive_id_len;
        let pad = PAD_BLOCK - framed % PAD_BLOCK;
        let padded = framed + pad;
        Ok(Layout {
            msg_len,
            pad,
            padded,
            encoded: padded.div_ceil(3) * 4,
        })
    }
}

/// Which receive-ids a decryption accepts.
#[derive(Clone, Copy)]
enum ReceiveIdCheck {
    Expected,
    Any,
}

impl MsgCrypt {
    /// Builds the crypt for one account.
    ///
    /// * `token`: the Token from the console, used only for signatures.
    /// * `encoding_aes_key`: the 43-character EncodingAESKey. Non-zero trailing bits in its last
    ///   character are accepted, as WeChat's own consoles produce them.
    /// * `receive_id`: what trails every plaintext: the AppID for Official Accounts and Mini
    ///   Programs, the CorpID or SuiteID for WeCom, the bot APPID for the Dialogue platform, or
    ///   empty for the WeCom smart robot.
    ///
    /// ```
    /// use wxbizmsgcrypt::{Error, MsgCrypt};
    /// assert!(MsgCrypt::new("t", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "").is_ok());
    /// let err = MsgCrypt::new("t", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEF!", "").unwrap_err();
    /// assert_eq!(err, Error::AesKeyCharacter { position: 42 });
    /// ```
    pub fn new(
        token: impl Into<String>,
        encoding_aes_key: &str,
        receive_id: impl Into<Vec<u8>>,
    ) -> Result<MsgCrypt, Error> {
        Ok(MsgCrypt::with_key(
            token,
            AesKey::parse(encoding_aes_key)?,
            receive_id,
        ))
    }

    /// Builds the crypt from an already parsed key (see [`AesKey::parse`]).
    pub fn with_key(
        token: impl Into<String>,
        key: AesKey,
        receive_id: impl Into<Vec<u8>>,
    ) -> MsgCrypt {
        MsgCrypt {
            token: token.into().into_boxed_str(),
            key,
            receive_id: receive_id.into().into_boxed_slice(),
        }
    }

    /// The expected receive-id.
    pub fn receive_id(&self) -> &[u8] {
        &self.receive_id
    }

    /// Encrypts `msg` with a fresh random prefix from a userspace CSPRNG seeded by the OS.
    ///
    /// ```
    /// # use wxbizmsgcrypt::MsgCrypt;
    /// let crypt = MsgCrypt::new("t", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "appid")?;
    /// let a = crypt.encrypt(b"hello")?;
    /// let b = crypt.encrypt(b"hello")?;
    /// assert_ne!(a, b, "every message gets its own random prefix");
    /// assert_eq!(crypt.decrypt(&a)?.message(), b"hello");
    /// # Ok::<(), wxbizmsgcrypt::Error>(())
    /// ```
    ///
    /// Fails only with [`Error::MessageTooLong`], for messages over 4 GiB.
    pub fn encrypt(&self, msg: &[u8]) -> Result<String, Error> {
        let mut out = String::new();
        self.encrypt_into(msg, &mut out)?;
        Ok(out)
    }

    /// Encrypts `msg` with an explicit random prefix, for reproducible test vectors.
    ///
    /// Never reuse a prefix in production: equal prefixes give equal first ciphertext blocks.
    ///
    /// ```
    /// # use wxbizmsgcrypt::MsgCrypt;
    /// // protocols.md V4: empty receive-id, multi-byte text.
    /// let crypt = MsgCrypt::new("t", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "")?;
    /// let encrypt = crypt.encrypt_with_random(b"0123456789abcdef", "你好😀".as_bytes())?;
    /// assert_eq!(encrypt, "Q3stYC6hdFzMh9T8HCvyDDzSJ6PKtMZfQkHuLIREQ3g=");
    /// # Ok::<(), wxbizmsgcrypt::Error>(())
    /// ```
    pub fn encrypt_with_random(
        &self,
        random: &[u8; RANDOM_LEN],
        msg: &[u8],
    ) -> Result<String, Error> {
        let mut out = String::new();
        self.seal_into(random, msg, &mut out)?;
        Ok(out)
    }

    /// Encrypts `msg` into `out`, replacing its contents and reusing its allocation: the hot
    /// path makes no allocation once `out` has grown to size.
    pub fn encrypt_into(&self, msg: &[u8], out: &mut String) -> Result<(), Error> {
        let mut random = [0u8; RANDOM_LEN];
        rand::rng().fill_bytes(&mut random);
        self.seal_into(&random, msg, out)
    }

    fn seal_into(
        &self,
        random: &[u8; RANDOM_LEN],
        msg: &[u8],
        out: &mut String,
    ) -> Result<(), Error> {
        let layout = Layout::of(msg, self.receive_id.len())?;
        self.seal_with(random, msg, &layout, out, None);
        Ok(())
    }

    /// Gathers, encrypts and encodes the framed plaintext a chunk at a time (see seal.rs), and
    /// hashes the text on the way when a `signer` is given. `out` is the only buffer, sized
    /// once, and no byte of it is validated or copied again.
    fn seal_with(
        &self,
        random: &[u8; RANDOM_LEN],
        msg: &[u8],
        layout: &Layout,
        out: &mut String,
        signer: Option<&mut signature::StreamSigner<'_>>,
    ) {
        if layout.padded <= seal::SMALL_CHUNK {
            let mut chunk = [0u8; seal::SMALL_CHUNK];
            self.seal_pieces(&mut chunk, random, msg, layout, out, signer);
        } else {
            let mut chunk = [0u8; seal::CHUNK];
            self.seal_pieces(&mut chunk, random, msg, layout, out, signer);
        }
    }

    #[inline(always)]
    fn seal_pieces(
        &self,
        chunk: &mut [u8],
        random: &[u8; RANDOM_LEN],
        msg: &[u8],
        layout: &Layout,
        out: &mut String,
        signer: Option<&mut signature::StreamSigner<'_>>,
    ) {
        let mut sealer = seal::Sealer::new(
            &self.key.encryptor,
            &self.key.iv,
            out,
            layout.encoded,
            chunk,
            signer,
        );
        sealer.push(random);
        sealer.push(&layout.msg_len.to_be_bytes());
        sealer.push(msg);
        sealer.push(&self.receive_id);
        // pad ≤ 32, so the cast is lossless.
        sealer.push(&[layout.pad as u8; PAD_BLOCK][..layout.pad]);
        sealer.finish();
    }

    /// [`MsgCrypt::encrypt_and_sign`] with an explicit random prefix.
    fn seal_and_sign(
        &self,
        random: &[u8; RANDOM_LEN],
        msg: &[u8],
        timestamp: &str,
        nonce: &str,
    ) -> Result<Sealed, Error> {
        let layout = Layout::of(msg, self.receive_id.len())?;
        let mut encrypt = String::new();
        if layout.padded <= seal::SMALL_CHUNK {
            self.seal_with(random, msg, &layout, &mut encrypt, None);
            let msg_signature = self.sign(timestamp, nonce, &encrypt);
            return Ok(Sealed {
                encrypt,
                msg_signature,
            });
        }
        // Longer messages are hashed while they are encrypted: CBC encryption and SHA-1 are both
        // serial chains, and interleaved the CPU runs them side by side (see seal.rs). Short ones
        // are hashed in one call afterwards (signature.rs), which is faster for them.
        let mut signer = signature::StreamSigner::new(
            self.token.as_bytes(),
            timestamp.as_bytes(),
            nonce.as_bytes(),
            layout.encoded,
        );
        self.seal_with(random, msg, &layout, &mut encrypt, Some(&mut signer));
        let msg_signature = signer.finish(encrypt.as_bytes());
        Ok(Sealed {
            encrypt,
            msg_signature,
        })
    }

    /// Encrypts `msg` and signs the result with `timestamp` and `nonce`, as a passive reply or a
    /// WeCom-style envelope needs.
    pub fn encrypt_and_sign(
        &self,
        msg: &[u8],
        timestamp: &str,
        nonce: &str,
    ) -> Result<Sealed, Error> {
        let mut random = [0u8; RANDOM_LEN];
        rand::rng().fill_bytes(&mut random);
        self.seal_and_sign(&random, msg, timestamp, nonce)
    }

    /// `msg_signature` over this account's token and the given inputs.
    pub fn sign(&self, timestamp: &str, nonce: &str, encrypt: &str) -> Signature {
        sign_message(&*self.token, timestamp, nonce, encrypt)
    }

    /// Checks a `msg_signature` in constant time.
    pub fn verify_signature(
        &self,
        msg_signature: &str,
        timestamp: &str,
        nonce: &str,
        encrypt: &str,
    ) -> Result<(), Error> {
        verify_message(&*self.token, timestamp, nonce, encrypt, msg_signature)
    }

    /// Checks a plain `signature` (token, timestamp, nonce) in constant time, as Official Account
    /// URL verification and plaintext mode use.
    pub fn verify_plain_signature(
        &self,
        signature: &str,
        timestamp: &str,
        nonce: &str,
    ) -> Result<(), Error> {
        verify_plain(&*self.token, timestamp, nonce, signature)
    }

    /// Verifies `msg_signature`, then decrypts and checks the receive-id.
    pub fn verify_and_decrypt(
        &self,
        msg_signature: &str,
        timestamp: &str,
        nonce: &str,
        encrypt: &str,
    ) -> Result<Plaintext, Error> {
        let received = signature::parse(SignatureKind::Message, msg_signature)?;
        let expected = signature::message_digest(
            self.token.as_bytes(),
            timestamp.as_bytes(),
            nonce.as_bytes(),
            encrypt.as_bytes(),
        );
        // Decoding and decryption (steps 1–4) are fixed work on the public ciphertext, which the
        // CPU overlaps with the end of the hash when they come before the comparison. Nothing of
        // the plaintext is looked at (padding, lengths, receive-id) and no error of theirs is
        // reported until the signature has been checked, so the outcome is that of verifying
        // first, and a bad signature reveals nothing about the plaintext.
        let mut buf = Vec::new();
        let decrypted = self.decode_and_decrypt(encrypt, &mut buf);
        signature::check(SignatureKind::Message, &expected, &received)?;
        decrypted?;
        let (message, receive_id) = self.unframe(&buf, ReceiveIdCheck::Expected)?;
        Ok(Plaintext {
            buf,
            message,
            receive_id,
        })
    }

    /// WeCom URL verification: checks the `msg_signature` over the encrypted `echostr`, decrypts
    /// it and returns the plaintext to echo back.
    ///
    /// Pass `echostr` decoded exactly once from the query string: a `+` must stay a `+`.
    ///
    /// (Official Account URL verification sends `echostr` in plaintext and signs only the token,
    /// timestamp and nonce: use [`MsgCrypt::verify_plain_signature`] and echo it unchanged.)
    pub fn verify_url(
        &self,
        msg_signature: &str,
        timestamp: &str,
        nonce: &str,
        echostr: &str,
    ) -> Result<Plaintext, Error> {
        self.verify_and_decrypt(msg_signature, timestamp, nonce, echostr)
    }

    /// Decrypts a base64 ciphertext and checks that the receive-id is the expected one.
    ///
    /// Surrounding ASCII whitespace is trimmed; anything else that is not canonical base64 is
    /// rejected. Signatures are not checked here (the Dialogue platform sends none); use
    /// [`MsgCrypt::verify_and_decrypt`] where one is sent.
    pub fn decrypt(&self, encrypt: &str) -> Result<Plaintext, Error> {
        self.decrypt_owned(encrypt, ReceiveIdCheck::Expected)
    }

    /// Decrypts without checking the receive-id, and returns the one found (possibly empty).
    ///
    /// This is an explicit opt-in for the scenarios where the id varies, such as WeCom suite
    /// callbacks (SuiteID or CorpID by callback type). The caller must check
    /// [`Plaintext::receive_id`] itself.
    pub fn decrypt_any_receive_id(&self, encrypt: &str) -> Result<Plaintext, Error> {
        self.decrypt_owned(encrypt, ReceiveIdCheck::Any)
    }

    /// Decrypts into `buf`, replacing its contents and reusing its allocation, and checks the
    /// receive-id. The returned slices borrow from `buf`.
    pub fn decrypt_into<'b>(
        &self,
        encrypt: &str,
        buf: &'b mut Vec<u8>,
    ) -> Result<Decrypted<'b>, Error> {
        let (message, receive_id) = self.open_into(encrypt, buf, ReceiveIdCheck::Expected)?;
        Ok(Decrypted {
            message: buf.get(message).unwrap_or_default(),
            receive_id: buf.get(receive_id).unwrap_or_default(),
        })
    }

    fn decrypt_owned(&self, encrypt: &str, check: ReceiveIdCheck) -> Result<Plaintext, Error> {
        let mut buf = Vec::new();
        let (message, receive_id) = self.open_into(encrypt, &mut buf, check)?;
        Ok(Plaintext {
            buf,
            message,
            receive_id,
        })
    }

    /// The normative decryption procedure (protocols.md §3.5), in order.
    fn open_into(
        &self,
        encrypt: &str,
        buf: &mut Vec<u8>,
        check: ReceiveIdCheck,
    ) -> Result<(Range<usize>, Range<usize>), Error> {
        self.decode_and_decrypt(encrypt, buf)?;
        self.unframe(buf, check)
    }

    /// Steps 1–4 of §3.5: trim, decode, check the length, decrypt in place into `buf`.
    fn decode_and_decrypt(&self, encrypt: &str, buf: &mut Vec<u8>) -> Result<(), Error> {
        let text = encrypt.trim_ascii().as_bytes();
        if text.is_empty() {
            return Err(Error::Base64 {
                reason: Base64Error::Empty,
            });
        }
        buf.clear();
        b64::decode_append(text, buf).map_err(|reason| Error::Base64 { reason })?;
        let len = buf.len();
        if len == 0 || len % PAD_BLOCK != 0 {
            return Err(Error::CiphertextLength { len });
        }

        // By reference: the expanded key is not copied per message.
        let decryptor =
            cbc::Decryptor::<&Aes256Dec>::inner_iv_init(&self.key.decryptor, &self.key.iv);
        decryptor
            .decrypt_padded_mut::<NoPadding>(buf)
            .map_err(|_| Error::CiphertextLength { len })?;
        Ok(())
    }

    /// Steps 5–9 of §3.5 on the decrypted `buf`: padding, header, length field, receive-id.
    /// Returns the ranges of the message and of the receive-id.
    fn unframe(
        &self,
        buf: &[u8],
        check: ReceiveIdCheck,
    ) -> Result<(Range<usize>, Range<usize>), Error> {
        let len = buf.len();
        let body_len = len - check_padding(buf)?;
        if body_len < HEADER_LEN {
            return Err(Error::BufferTooShort { len: body_len });
        }
        let mut len_field = [0u8; 4];
        len_field.copy_from_slice(buf.get(RANDOM_LEN..HEADER_LEN).unwrap_or(&[0; 4]));
        let msg_len = u32::from_be_bytes(len_field);
        let available = body_len - HEADER_LEN;
        let msg_end = usize::try_from(msg_len)
            .ok()
            .filter(|&n| n <= available)
            .map(|n| HEADER_LEN + n)
            .ok_or(Error::MessageLengthOutOfRange { msg_len, available })?;

        let found = buf.get(msg_end..body_len).unwrap_or_default();
        if let ReceiveIdCheck::Expected = check {
            if !signature::ct_eq(found, &self.receive_id) {
                return Err(Error::ReceiveIdMismatch {
                    found: String::from_utf8_lossy(found).into_owned(),
                });
            }
        }
        Ok((HEADER_LEN..msg_end, msg_end..body_len))
    }
}

/// Checks WeChat's 32-byte PKCS#7 padding in constant time and returns the pad length.
///
/// Every one of the last 32 bytes is inspected whatever the pad value, so the time taken does not
/// depend on where the padding goes wrong.
fn check_padding(plain: &[u8]) -> Result<usize, Error> {
    let Some(tail) = plain.last_chunk::<PAD_BLOCK>() else {
        return Err(Error::CiphertextLength { len: plain.len() });
    };
    let pad = tail[PAD_BLOCK - 1];
    let mut mismatch = 0u8;
    for (i, &byte) in tail.iter().enumerate() {
        // in_pad is 0xff when this byte lies inside the announced padding (its distance from the
        // end, 31 - i, is below pad), 0 otherwise, computed without a data-dependent branch. The
        // loop runs forwards over a fixed-size array, so the compiler vectorises it.
        let in_pad = ((PAD_BLOCK as u16 - 1).wrapping_sub(i as u16 + u16::from(pad)) >> 8) as u8;
        mismatch |= in_pad & (byte ^ pad);
    }
    if pad == 0 || usize::from(pad) > PAD_BLOCK {
        return Err(Error::PadOutOfRange { pad });
    }
    if mismatch != 0 {
        return Err(Error::PadBytesMismatch { pad });
    }
    Ok(usize::from(pad))
}

#[cfg(test)]
mod tests;
