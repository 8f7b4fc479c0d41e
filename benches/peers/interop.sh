#!/usr/bin/env bash
# Interoperability, both ways, with the established WXBizMsgCrypt implementations from the package
# registries: wechatpy (PyPI; its crypto is a port of Tencent's official Python sample) and
# wechat-crypto (npm). For messages that give every pad length 1..=32, plus non-ASCII ones:
#
# * ciphertext and msg_signature made by `kefu-connector crypt encrypt` are verified and
#   decrypted by each peer;
# * ciphertext and signatures made by each peer are verified and decrypted by
#   `kefu-connector crypt decrypt`, byte for byte.
#
# Usage: benches/peers/interop.sh [path/to/kefu-connector]  (default: builds the debug binary).
# Needs python3 with venv, node and npm. CI runs it; it exits non-zero on any mismatch.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
source "$here/install.sh"

ours="${1:-}"
if [ -z "$ours" ]; then
    (cd "$root" && cargo build --quiet --locked -p kefu-connector)
    ours="$root/target/debug/kefu-connector"
fi
"$env/venv/bin/python" "$here/interop.py" "$ours" "$env"
