# Installs the peers (wechatpy from PyPI, wechat-crypto from npm) into benches/peers/.env, which
# git ignores. Sourced by run.sh and interop.sh; sets $env.
env="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/.env"
mkdir -p "$env"
echo "== installing the peers into $env" >&2
[ -x "$env/venv/bin/python" ] || python3 -m venv "$env/venv"
"$env/venv/bin/pip" install --quiet --disable-pip-version-check "wechatpy==1.8.18" "cryptography==50.0.2"
npm install --silent --no-audit --no-fund --prefix "$env/node" "wechat-crypto@0.0.2" >/dev/null
