// Times the npm package `wechat-crypto` (on Node's OpenSSL) on the inputs of benches/crypto.rs:
// encrypt + sign and verify + decrypt, per call, the fastest of 30 samples of ~20 ms (as
// benches/crypto.rs takes its figures). Prints JSON lines.
'use strict';
const path = require('path');
const C = require('./common.json');
const root = path.join(__dirname, '.env', 'node', 'node_modules', 'wechat-crypto');
const WXBizMsgCrypt = require(root);
const version = require(path.join(root, 'package.json')).version;

const SAMPLES = 30;
const SAMPLE_NS = 20e6;

const crypt = new WXBizMsgCrypt(C.token, C.encoding_aes_key, C.receive_id);

// Same scheme: the spec's vector V2 decrypts to its message.
{
  const r = crypt.decrypt(C.check_encrypt);
  if (r.message !== C.check_message || r.id !== C.receive_id) throw new Error('V2 does not decrypt');
}

function message(n) {
  return C.pattern.repeat(Math.floor(n / C.pattern.length) + 1).slice(0, n);
}

function encryptAndSign(msg) {
  const encrypt = crypt.encrypt(msg);
  return [encrypt, crypt.getSignature(C.timestamp, C.nonce, encrypt)];
}

function verifyAndDecrypt(signature, encrypt) {
  // The package leaves both checks to the caller; do them as our verify_and_decrypt does.
  if (crypt.getSignature(C.timestamp, C.nonce, encrypt) !== signature) throw new Error('signature');
  const r = crypt.decrypt(encrypt);
  if (r.id !== C.receive_id) throw new Error('receive id');
  return r.message;
}

function fastestNs(f) {
  let iters = 1;
  for (;;) {
    const t = process.hrtime.bigint();
    for (let i = 0; i < iters; i++) f();
    if (Number(process.hrtime.bigint() - t) >= SAMPLE_NS / 4) break;
    iters *= 2;
  }
  iters *= 4;
  const samples = [];
  for (let k = 0; k < SAMPLES; k++) {
    const t = process.hrtime.bigint();
    for (let i = 0; i < iters; i++) f();
    samples.push(Number(process.hrtime.bigint() - t) / iters);
  }
  return Math.min(...samples);
}

const impl = `wechat-crypto ${version} (Node ${process.version}, OpenSSL ${process.versions.openssl})`;
for (const size of C.sizes) {
  const msg = message(size);
  if (Buffer.byteLength(msg) !== size) throw new Error('size');
  const [encrypt, signature] = encryptAndSign(msg);
  if (verifyAndDecrypt(signature, encrypt) !== msg) throw new Error('round trip');
  for (const [op, f] of [
    ['encrypt_and_sign', () => encryptAndSign(msg)],
    ['verify_and_decrypt', () => verifyAndDecrypt(signature, encrypt)],
  ]) {
    console.log(JSON.stringify({ impl, size, op, ns: fastestNs(f) }));
  }
}
