#!/usr/bin/env bash
# Compares wxbizmsgcrypt with the established WXBizMsgCrypt implementations from the package
# registries, on this machine and in one run, and prints one table:
#
# * wechatpy (PyPI), on `cryptography`;
# * wechat-crypto (npm), on Node's OpenSSL.
#
# Both are installed into benches/peers/.env (ignored by git). Needs python3 with venv, node and
# npm, and cargo. Every implementation gets the same inputs (common.json; benches/crypto.rs uses
# the same constants) and is timed the same way: per call, the fastest of 30 samples of ~20 ms.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
source "$here/install.sh"

echo "== ours: cargo bench -p wxbizmsgcrypt --bench crypto -- hot_path" >&2
(cd "$root" && WXBIZMSGCRYPT_BENCH_JSON="$env/ours.json" \
    cargo bench -p wxbizmsgcrypt --bench crypto -- hot_path) >"$env/ours.log" 2>&1 \
    || { cat "$env/ours.log" >&2; exit 1; }
echo "== wechatpy" >&2
"$env/venv/bin/python" "$here/wechatpy_bench.py" >"$env/wechatpy.jsonl"
echo "== wechat-crypto" >&2
node --no-deprecation "$here/wechat_crypto_bench.js" >"$env/wechat-crypto.jsonl"

echo
echo "$(date -u +%F) $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
"$env/venv/bin/python" "$here/table.py" "$env/ours.json" "$env/wechatpy.jsonl" "$env/wechat-crypto.jsonl"
