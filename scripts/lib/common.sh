# Shared by scripts/demo and scripts/test: install what is missing, start project-local
# PostgreSQL and InfluxDB on free loopback ports, stop them again on exit.
# Nothing outside the project folder is changed except Debian packages and the Rust target.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
fail() { printf 'error: %s\n' "$*" >&2; exit 1; }

CLEANUP=()
cleanup() {
  local i
  for ((i = ${#CLEANUP[@]} - 1; i >= 0; i--)); do eval "${CLEANUP[$i]}" || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

APT_UPDATED=
ensure_packages() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing Debian packages: ${missing[*]}"
  if [ -z "$APT_UPDATED" ]; then as_root apt-get update -qq; APT_UPDATED=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The data planes opsdeck drives or is measured against: HAProxy (the second traffic provider,
# started by the tests on loopback ports) and nginx (the benchmark's reference proxy). Both are
# run by hand with generated configs; their system services are not used.
DATA_PLANE_PACKAGES=(haproxy nginx)

ensure_rust() {
  command -v cargo >/dev/null || fail "cargo not found: install Rust with rustup first (https://rustup.rs)"
  if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    say "adding the wasm32-unknown-unknown Rust target (for the browser bundle)"
    rustup target add wasm32-unknown-unknown
  fi
  local component
  for component in "$@"; do
    rustup component list --installed 2>/dev/null | grep -q "^$component" || { say "adding rustup component $component"; rustup component add "$component"; }
  done
}

# wasm-opt shrinks the wasm ~2.5x. Debian bookworm's binaryen (108) breaks Leptos bundles, so
# npm's binaryen@132 goes into .tools/ (project-local).
ensure_wasm_opt() {
  [ -x .tools/node_modules/.bin/wasm-opt ] && return 0
  command -v npm >/dev/null || ensure_packages nodejs npm
  say "installing wasm-opt (npm binaryen@132) into .tools/"
  mkdir -p .tools
  (cd .tools && npm install --silent --no-fund --no-audit --no-save binaryen@132 >/dev/null)
}

# A free port for a server, below Linux's ephemeral range (32768-60999), so no client
# connection (or its TIME_WAIT, which a connect probe can't see) holds it.
free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 12768))
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
  done
}

wait_for() { # description, seconds, command...
  local what=$1 seconds=$2; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || fail "$what did not come up within ${seconds}s"
    sleep 0.2
  done
}

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

# start_postgres DIR: a cluster in DIR (created on first use), on a free port, stopped on exit.
# Sets PG_PORT and PG_HOST_URL (postgres://postgres@127.0.0.1:PORT).
start_postgres() {
  local dir=$1 bin run=()
  bin=$(pg_bin); [ -n "$bin" ] || fail "PostgreSQL binaries not found under /usr/lib/postgresql"
  mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
  if [ "$(id -u)" = 0 ]; then chown -R postgres "$dir"; run=(runuser -u postgres --); fi
  if [ ! -f "$dir/PG_VERSION" ]; then
    say "creating a PostgreSQL cluster in ${dir#"$ROOT"/}"
    "${run[@]}" "$bin/initdb" -D "$dir" -U postgres --auth=trust --no-sync >/dev/null
  fi
  if "${run[@]}" "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
    "${run[@]}" "$bin/pg_ctl" -D "$dir" -m fast -w stop >/dev/null
  fi
  PG_PORT=$(free_port)
  say "starting PostgreSQL on 127.0.0.1:$PG_PORT"
  "${run[@]}" "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w \
    -o "-p $PG_PORT -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=${PG_FSYNC:-on}" start >/dev/null \
    || { tail -n 20 "$dir/server.log" >&2; fail "PostgreSQL did not start (log above)"; }
  CLEANUP+=("say 'stopping PostgreSQL'; ${run[*]} $bin/pg_ctl -D '$dir' -m fast -w stop >/dev/null")
  PG_HOST_URL="postgres://postgres@127.0.0.1:$PG_PORT"
}

# create_database NAME: creates it in the cluster started above unless it exists.
create_database() {
  local bin; bin=$(pg_bin)
  if [ -z "$("$bin/psql" "$PG_HOST_URL/postgres" -tAc "SELECT 1 FROM pg_database WHERE datname = '$1'")" ]; then
    "$bin/psql" "$PG_HOST_URL/postgres" -qc "CREATE DATABASE \"$1\"" >/dev/null
  fi
}

# start_influxdb DIR: InfluxDB 1.x with its data in DIR, on a free port, stopped on exit.
# Sets INFLUX_URL.
start_influxdb() {
  local dir=$1 port
  mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
  port=$(free_port)
  say "starting InfluxDB on 127.0.0.1:$port"
  INFLUXDB_REPORTING_DISABLED=true INFLUXDB_BIND_ADDRESS="127.0.0.1:$(free_port)" \
    INFLUXDB_META_DIR="$dir/meta" INFLUXDB_DATA_DIR="$dir/data" INFLUXDB_DATA_WAL_DIR="$dir/wal" \
    INFLUXDB_HTTP_BIND_ADDRESS="127.0.0.1:$port" INFLUXDB_MONITOR_STORE_ENABLED=false \
    INFLUXDB_HTTP_LOG_ENABLED=false INFLUXDB_LOGGING_LEVEL=warn \
    influxd run -config /dev/null >"$dir/server.log" 2>&1 &
  local pid=$!
  CLEANUP+=("say 'stopping InfluxDB'; kill $pid 2>/dev/null; wait $pid 2>/dev/null")
  INFLUX_URL="http://127.0.0.1:$port"
  wait_for "InfluxDB" 30 curl -sf "$INFLUX_URL/ping"
}
