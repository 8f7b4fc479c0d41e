"""Interoperability of `kefu-connector crypt` with wechatpy and wechat-crypto, both ways (see
interop.sh). Usage: interop.py KEFU_CONNECTOR PEERS_ENV. Exits 1 on the first mismatch."""

import json
import os
import subprocess
import sys

import xmltodict
from wechatpy.crypto import WeChatCrypto

HERE = os.path.dirname(os.path.abspath(__file__))
OURS, ENV = sys.argv[1], sys.argv[2]
with open(os.path.join(HERE, "common.json")) as f:
    C = json.load(f)
TOKEN, KEY, RID, TS = C["token"], C["encoding_aes_key"], C["receive_id"], C["timestamp"]
KEYS = ["--token", TOKEN, "--aes-key", KEY, "--bot-appid", RID]

# 16 random bytes, a 4-byte length, the message and the receive-id, padded to 32 bytes: lengths 0
# to 31 give every pad length 1..=32. Then text that is not ASCII, and XML specials.
MESSAGES = ["x" * n for n in range(32)] + [
    "你好，我想找人工客服 👋",
    "<xml><![CDATA[a]]>]]&gt;</xml> & é" * 9,
    "é" * 300,
]


def pad_len(message):
    return 32 - (20 + len(message.encode()) + len(RID)) % 32


assert sorted({pad_len(m) for m in MESSAGES}) == list(range(1, 33))


def ours_encrypt(message, nonce):
    out = subprocess.run(
        [OURS, "crypt", "encrypt", *KEYS, "--timestamp", TS, "--nonce", nonce],
        input=message.encode(),
        capture_output=True,
        check=True,
    )
    return json.loads(out.stdout)


def ours_decrypt(envelope, signature, nonce):
    out = subprocess.run(
        [OURS, "crypt", "decrypt", *KEYS, "--signature", signature, "--timestamp", TS, "--nonce", nonce],
        input=envelope.encode(),
        capture_output=True,
    )
    if out.returncode != 0:
        raise AssertionError(f"ours refused a peer's ciphertext: {out.stderr.decode().strip()}")
    return out.stdout


def check(label, got, want):
    if got != want:
        sys.exit(f"interop: {label}: got {got!r}, want {want!r}")


wechatpy = WeChatCrypto(TOKEN, KEY, RID)
ours = [ours_encrypt(m, f"n{i}") for i, m in enumerate(MESSAGES)]

# Ours -> wechatpy: its decrypt_message checks the signature and the receive-id.
for message, sealed in zip(MESSAGES, ours):
    envelope = f"<xml><ToUserName><![CDATA[gh_0]]></ToUserName><Encrypt><![CDATA[{sealed['encrypt']}]]></Encrypt></xml>"
    got = wechatpy.decrypt_message(envelope, sealed["msg_signature"], sealed["timestamp"], sealed["nonce"])
    check(f"wechatpy decrypting ours (pad {pad_len(message)})", got, message)

# wechatpy -> ours: its encrypt_message gives the XML reply envelope.
for i, message in enumerate(MESSAGES):
    envelope = wechatpy.encrypt_message(message, f"p{i}", TS)
    signature = xmltodict.parse(envelope)["xml"]["MsgSignature"]
    got = ours_decrypt(envelope, signature, f"p{i}")
    check(f"ours decrypting wechatpy (pad {pad_len(message)})", got, message.encode())

# Ours <-> wechat-crypto, through a Node helper that answers in one JSON document.
request = {"common": C, "ours": ours, "messages": MESSAGES}
node = subprocess.run(
    ["node", "--no-deprecation", os.path.join(HERE, "interop.js")],
    input=json.dumps(request).encode(),
    capture_output=True,
    env={**os.environ, "PEERS_ENV": ENV},
)
if node.returncode != 0:
    sys.exit(f"interop: wechat-crypto refused ours: {node.stderr.decode().strip()}")
for i, (message, sealed) in enumerate(zip(MESSAGES, json.loads(node.stdout))):
    got = ours_decrypt(sealed["encrypt"], sealed["msg_signature"], sealed["nonce"])
    check(f"ours decrypting wechat-crypto (pad {pad_len(message)})", got, message.encode())

print(
    f"interop: {len(MESSAGES)} messages (pads 1..=32 and non-ASCII) both ways with "
    f"wechatpy and wechat-crypto: all equal"
)
