#!/usr/bin/env bash
# A whole fleet on one machine, with one command: a throwaway PostgreSQL, the sandbox, and three
# relays sharing the database, ready for the README's curl examples; Ctrl-C (or TERM) stops
# everything and removes the temporary directory.
#
#   examples/fleet.sh
#
# Ports (127.0.0.1 only), overridable by environment:
#   FLEET_PG_PORT       PostgreSQL                     (55432)
#   FLEET_SANDBOX_PORT  the sandbox                    (18080)
#   FLEET_RELAY_PORT    the first relay; the next ones take the ports after it (18081)
#   FLEET_RELAYS        how many relays                (3)
# KEFU_BIN is the kefu-connector binary (default: target/debug/kefu-connector, built with
# `cargo build` if missing); KEFU_PG_BIN the directory of initdb and pg_ctl (default: found as
# the tests find it). The relays run kefu.example.toml with the sandbox's demo credentials.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
pg_port=${FLEET_PG_PORT:-55432}
sandbox_port=${FLEET_SANDBOX_PORT:-18080}
relay_port=${FLEET_RELAY_PORT:-18081}
relays=${FLEET_RELAYS:-3}
bin=${KEFU_BIN:-$repo/target/debug/kefu-connector}

if [[ ! -x $bin ]]; then
    echo "building $bin" >&2
    (cd "$repo" && cargo build -p kefu-connector)
fi

# PostgreSQL's binaries: Debian keeps them outside PATH.
pg_bin=${KEFU_PG_BIN:-}
if [[ -z $pg_bin ]]; then
    if command -v pg_config >/dev/null && [[ -x $(pg_config --bindir)/initdb ]]; then
        pg_bin=$(pg_config --bindir)
    else
        pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
        [[ -n $pg_bin ]] || pg_bin=$(dirname "$(command -v initdb || echo /nonexistent/initdb)")
    fi
fi
if [[ ! -x $pg_bin/initdb || ! -x $pg_bin/pg_ctl ]]; then
    echo "error: PostgreSQL's initdb and pg_ctl were not found: apt-get install postgresql, or set KEFU_PG_BIN" >&2
    exit 2
fi

dir=$(mktemp -d /tmp/kefu-fleet.XXXXXX)
pids=()
pg_started=
idle=

stop() {
    # Ctrl-C reaches the whole process group, and `timeout` passes its signal on twice: a
    # second one must not cut the clean-up short.
    trap '' INT TERM
    trap - EXIT
    echo "stopping the fleet" >&2
    [[ -z $idle ]] || kill "$idle" 2>/dev/null || true
    if ((${#pids[@]})); then
        kill -TERM "${pids[@]}" 2>/dev/null || true
        wait "${pids[@]}" 2>/dev/null || true
    fi
    if [[ -n $pg_started ]]; then
        as_pg "$pg_bin/pg_ctl" -D "$dir/pg/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
    echo "stopped; $dir removed" >&2
}
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM
trap 'stop' EXIT

# initdb refuses root: as root, PostgreSQL runs as the `postgres` user Debian's package creates.
mkdir "$dir/pg"
if [[ $(id -u) == 0 ]]; then
    chmod 711 "$dir"
    chown postgres: "$dir/pg"
    as_pg() { runuser -u postgres -- "$@"; }
else
    as_pg() { "$@"; }
fi

# Waits until `file` holds a line with `text`, or fails if process `pid` ended first.
await_line() {
    local file=$1 text=$2 pid=$3 name=$4
    for _ in $(seq 1 300); do
        if grep -q "$text" "$file" 2>/dev/null; then
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "error: $name stopped:" >&2
            tail -n 20 "$file" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "error: $name did not start within 30 s:" >&2
    tail -n 20 "$file" >&2
    exit 1
}

as_pg "$pg_bin/initdb" -D "$dir/pg/data" -U postgres --auth=trust -E UTF8 --locale=C >"$dir/initdb.log"
pg_started=1
as_pg "$pg_bin/pg_ctl" -D "$dir/pg/data" -l "$dir/pg/log" -w \
    -o "-p $pg_port -k $dir/pg -c listen_addresses=127.0.0.1" start >/dev/null
"$pg_bin/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres kefu
export KEFU_STORE_URL="postgres://postgres@127.0.0.1:$pg_port/kefu"
(cd "$dir" && "$bin" migrate >"$dir/migrate.log" 2>&1) || { cat "$dir/migrate.log" >&2; exit 1; }

relay_url() { echo "http://127.0.0.1:$((relay_port + $1 - 1))"; }

"$bin" sandbox --listen "127.0.0.1:$sandbox_port" --token DEMOTOKEN0123456789 \
    --aes-key abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG --bot-appid DEMOBOTAPPID0001 \
    --callback-url "$(relay_url 1)/v1/callbacks/dialogue/demo-callback-secret-0123" \
    >"$dir/sandbox.log" 2>&1 &
pids+=($!)
await_line "$dir/sandbox.log" "sandbox listening" $! sandbox

for i in $(seq 1 "$relays"); do
    (
        cd "$dir"
        export KEFU_SERVER_LISTEN="127.0.0.1:$((relay_port + i - 1))"
        export KEFU_DIALOGUE_BASE_URL="http://127.0.0.1:$sandbox_port/openapi"
        export KEFU_STORE_RELAY_NAME="relay$i"
        exec "$bin" serve --config "$repo/kefu.example.toml"
    ) >"$dir/relay$i.log" 2>&1 &
    pids+=($!)
    await_line "$dir/relay$i.log" "desk API on" $! "relay$i"
done

cat <<EOF
PostgreSQL  $KEFU_STORE_URL
sandbox     http://127.0.0.1:$sandbox_port (it pushes its users' callbacks to relay1)
EOF
for i in $(seq 1 "$relays"); do
    echo "relay$i      $(relay_url "$i")   log: $dir/relay$i.log"
done
cat <<EOF
temporary directory: $dir

As the desk, through any relay (the README's quickstart):
  KEY=demo-desk-key-0123456789
  curl -H "Authorization: Bearer \$KEY" -H 'Content-Type: application/json' \\
      -d '{"openid":"oUSER","channel":0,"msg":"您好"}' $(relay_url "$relays")/v1/messages
  curl -H "Authorization: Bearer \$KEY" $(relay_url 1)/v1/messages/1
  curl http://127.0.0.1:$sandbox_port/sandbox/messages
fleet ready; Ctrl-C stops it
EOF

# An interruptible wait: a trap runs as soon as the signal comes.
while :; do
    sleep 3600 &
    idle=$!
    wait "$idle" || true
done
