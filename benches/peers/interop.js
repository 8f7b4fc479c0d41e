// The wechat-crypto side of interop.py: reads {common, ours, messages} as JSON on stdin, verifies
// and decrypts each of ours (exit 1 on a mismatch), and prints its own sealed messages as JSON.
'use strict';
const path = require('path');
const WXBizMsgCrypt = require(path.join(process.env.PEERS_ENV, 'node', 'node_modules', 'wechat-crypto'));

let input = '';
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  const { common: C, ours, messages } = JSON.parse(input);
  const crypt = new WXBizMsgCrypt(C.token, C.encoding_aes_key, C.receive_id);
  ours.forEach((sealed, i) => {
    // The package leaves the signature compare and the receive-id check to the caller.
    if (crypt.getSignature(sealed.timestamp, sealed.nonce, sealed.encrypt) !== sealed.msg_signature) {
      throw new Error(`message ${i}: signature of ours does not verify`);
    }
    const { message, id } = crypt.decrypt(sealed.encrypt);
    if (message !== messages[i] || id !== C.receive_id) {
      throw new Error(`message ${i}: ours decrypts to ${JSON.stringify([message, id])}`);
    }
  });
  const theirs = messages.map((message, i) => {
    const encrypt = crypt.encrypt(message);
    const nonce = `w${i}`;
    return { encrypt, nonce, msg_signature: crypt.getSignature(C.timestamp, nonce, encrypt) };
  });
  process.stdout.write(JSON.stringify(theirs));
});
