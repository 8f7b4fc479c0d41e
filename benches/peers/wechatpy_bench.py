"""Times wechatpy's WXBizMsgCrypt (PyPI `wechatpy`, on `cryptography`) on the inputs of
benches/crypto.rs: encrypt + sign and verify + decrypt, per call, the fastest of 30 samples of
~20 ms (as benches/crypto.rs takes its figures). Prints JSON lines."""

import base64
import json
import os
import sys
import time

import cryptography
import wechatpy
from wechatpy.crypto import PrpCrypto, WeChatCrypto, _get_signature
from wechatpy.utils import to_text

SAMPLES = 30
SAMPLE_NS = 20_000_000  # about 20 ms per sample

with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "common.json")) as f:
    C = json.load(f)

crypto = WeChatCrypto(C["token"], C["encoding_aes_key"], C["receive_id"])
key = base64.b64decode(C["encoding_aes_key"] + "=")
token, ts, nonce, rid = C["token"], C["timestamp"], C["nonce"], C["receive_id"]

# Same scheme: the spec's vector V2 decrypts to its message.
assert PrpCrypto(key).decrypt(C["check_encrypt"], rid) == C["check_message"]


def message(n):
    p = C["pattern"]
    return (p * (n // len(p) + 1))[:n]


def encrypt_and_sign(msg):
    # WeChatCrypto._encrypt_message without its XML template.
    pc = PrpCrypto(key)
    encrypt = to_text(pc.encrypt(msg, rid))
    return encrypt, _get_signature(token, ts, nonce, encrypt)


def verify_and_decrypt(signature, encrypt):
    # Checks the msg_signature, decrypts and checks the receive-id.
    return crypto._check_signature(signature, ts, nonce, encrypt, PrpCrypto)


def fastest_ns(f):
    iters = 1
    while True:
        t = time.perf_counter_ns()
        for _ in range(iters):
            f()
        if time.perf_counter_ns() - t >= SAMPLE_NS / 4:
            break
        iters *= 2
    iters = max(1, iters * 4)
    samples = []
    for _ in range(SAMPLES):
        t = time.perf_counter_ns()
        for _ in range(iters):
            f()
        samples.append((time.perf_counter_ns() - t) / iters)
    return min(samples)


impl = f"wechatpy {wechatpy.__version__} (cryptography {cryptography.__version__}, Python {sys.version.split()[0]})"
for size in C["sizes"]:
    msg = message(size)
    assert len(msg.encode()) == size
    encrypt, signature = encrypt_and_sign(msg)
    assert verify_and_decrypt(signature, encrypt) == msg
    for op, f in [
        ("encrypt_and_sign", lambda: encrypt_and_sign(msg)),
        ("verify_and_decrypt", lambda: verify_and_decrypt(signature, encrypt)),
    ]:
        print(json.dumps({"impl": impl, "size": size, "op": op, "ns": fastest_ns(f)}), flush=True)
