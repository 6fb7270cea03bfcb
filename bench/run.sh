#!/usr/bin/env bash
# Foundation figures: release WASM size (raw, gzip) and the idle RSS of the
# release server. Run through `./x bench`, which builds first. Prints
# Markdown rows for BENCHMARKS.md.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
WASM="$TARGET/site/pkg/gantry_bg.wasm"
BIN="$TARGET/release/gantry"

raw=$(wc -c < "$WASM")
gz=$(gzip -9c "$WASM" | wc -c)
echo "| release WASM (wasm-opt -Oz) | $raw bytes raw, $gz bytes gzip -9 |"

data=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# Every page and API call needs a principal (issue 5): an admin token.
token=$("$BIN" token create --name bench --data-dir "$data/d" --log warn)
auth="Authorization: Bearer $token"
"$BIN" serve --bind "127.0.0.1:$port" --data-dir "$data/d" --log warn &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
# One page render and one API call, then let it settle: "idle" means after
# the first request, as a real server always is.
curl -fsS -H "$auth" "http://127.0.0.1:$port/" >/dev/null
curl -fsS -H "$auth" "http://127.0.0.1:$port/api/v1/runs" >/dev/null
sleep 5
rss_kb=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
echo "| idle server RSS (SQLite, after one page and one API call) | $((rss_kb / 1024)) MiB ($rss_kb kB) |"
echo "| release binary size | $(wc -c < "$BIN") bytes |"
echo "| release gantry-sandbox size (pid 1 of every sandbox) | $(wc -c < "$TARGET/release/gantry-sandbox") bytes |"

echo
cargo build --release -p bench --quiet
"$TARGET/release/push_to_live" "$BIN"

echo
"$TARGET/release/fan_out"

echo
# helm and kubectl from .tools/bin (./x installs them), as the tests use them.
PATH="$ROOT/.tools/bin:$PATH" "$TARGET/release/chart_apply"

echo
"$TARGET/release/rollback" "$BIN"

echo
"$TARGET/release/ledger" "$BIN"

echo
"$TARGET/release/home" "$BIN"

echo
"$TARGET/release/webhooks" "$BIN"

echo
"$TARGET/release/takeover" "$BIN"

echo
"$TARGET/release/builds" "$BIN"
