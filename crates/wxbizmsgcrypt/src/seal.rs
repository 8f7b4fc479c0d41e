//! The encryption pipeline: framing, AES-256-CBC and base64, one cache-sized chunk at a time.
//!
//! The framed, padded plaintext is never materialised. Its pieces (random prefix, length, message,
//! receive-id, padding) are gathered into a stack buffer of [`CHUNK`] bytes; each full buffer is
//! encrypted in place, continuing the CBC chain, and its base64 is appended straight to the output
//! `String`. Because [`CHUNK`] is a multiple of both the AES block (16 bytes) and the base64
//! quantum (3 bytes), the pieces of base64 join without padding, and only the last one is padded.
//! The output is the only allocation, and it is sized exactly up front.

use aes::Aes256Enc;
use aes::cipher::consts::U16;
use aes::cipher::inout::InOutBuf;
use aes::cipher::{BlockBackend, BlockClosure, BlockEncrypt as _, BlockSizeUser};

use crate::b64;

/// Bytes gathered, encrypted and encoded at a time: 96 AES blocks, 512 base64 quanta. It must be
/// a multiple of 48, and so of 32 too.
pub(crate) const CHUNK: usize = 1536;
/// The chunk for messages that fit in one: zeroing a smaller buffer is cheaper.
pub(crate) const SMALL_CHUNK: usize = 288;
const _: () = assert!(CHUNK % 96 == 0 && SMALL_CHUNK % 96 == 0);

/// CBC encryption of whole blocks, written against the cipher's backend so that the chaining
/// value stays in a register from block to block. (The `cbc` crate keeps it in its struct and
/// reloads it from memory on every block, which lengthens the serial dependency chain that bounds
/// CBC encryption by a store-to-load forwarding delay, about 15% at 64 KiB.)
struct CbcEncrypt<'a, 'b> {
    chain: &'a mut aes::Block,
    blocks: InOutBuf<'b, 'b, aes::Block>,
}

impl BlockSizeUser for CbcEncrypt<'_, '_> {
    type BlockSize = U16;
}

impl BlockClosure for CbcEncrypt<'_, '_> {
    #[inline(always)]
    fn call<B: BlockBackend<BlockSize = U16>>(mut self, backend: &mut B) {
        let mut chain = *self.chain;
        for i in 0..self.blocks.len() {
            let mut block = self.blocks.get(i);
            let mut value = block.clone_in();
            for (byte, c) in value.iter_mut().zip(chain.iter()) {
                *byte ^= c;
            }
            backend.proc_block((&mut value).into());
            chain = value;
            *block.get_out() = value;
        }
        *self.chain = chain;
    }
}

/// Gathers plaintext pieces, and encrypts and encodes them chunk by chunk into `out`.
pub(crate) struct Sealer<'a> {
    cipher: &'a Aes256Enc,
    chain: aes::Block,
    out: &'a mut String,
    chunk: &'a mut [u8],
    filled: usize,
}

impl<'a> Sealer<'a> {
    /// Starts a message; `out` is cleared and grown to `encoded_len` once. `chunk` is the
    /// working buffer: [`CHUNK`] or [`SMALL_CHUNK`] bytes, borrowed so that it is not moved.
    pub(crate) fn new(
        cipher: &'a Aes256Enc,
        iv: &aes::Block,
        out: &'a mut String,
        encoded_len: usize,
        chunk: &'a mut [u8],
    ) -> Sealer<'a> {
        debug_assert!(chunk.len() % 96 == 0 && !chunk.is_empty());
        out.clear();
        out.reserve(encoded_len);
        Sealer {
            cipher,
            chain: *iv,
            out,
            chunk,
            filled: 0,
        }
    }

    /// Appends plaintext bytes.
    #[inline]
    pub(crate) fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let Some(room) = self.chunk.get_mut(self.filled..) else {
                return;
            };
            let n = room.len().min(bytes.len());
            let (now, rest) = bytes.split_at(n);
            room[..n].copy_from_slice(now);
            self.filled += n;
            bytes = rest;
            if self.filled == self.chunk.len() {
                self.flush();
            }
        }
    }

    /// Encrypts and encodes what has been gathered: a whole number of AES blocks, as the caller
    /// pads the plaintext to 32 bytes and the chunk is a multiple of 32.
    fn flush(&mut self) {
        let Some(data) = self.chunk.get_mut(..self.filled) else {
            return;
        };
        let (blocks, tail) = InOutBuf::from(&mut *data).into_chunks::<U16>();
        debug_assert!(tail.is_empty(), "the plaintext is padded to whole blocks");
        self.cipher.encrypt_with_backend(CbcEncrypt {
            chain: &mut self.chain,
            blocks,
        });
        b64::encode_append(data, self.out);
        self.filled = 0;
    }

    /// Encrypts and encodes the rest.
    pub(crate) fn finish(mut self) {
        if self.filled > 0 {
            self.flush();
        }
    }
}
