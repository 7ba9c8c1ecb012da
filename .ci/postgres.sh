#!/usr/bin/env bash
# A throwaway PostgreSQL server for the storage tests, on a free loopback port.
#
#   eval "$(bash .ci/postgres.sh start)"   # install if missing, init, start; exports CXREADER_TEST_POSTGRES_URL
#   bash .ci/postgres.sh url               # print the export line of the running server again
#   bash .ci/postgres.sh stop              # stop the server and delete its cluster
#
# `start` is idempotent: a server this script already started is reused. Only the `export ...` line goes to
# stdout; progress goes to stderr. PostgreSQL comes from the Debian packages (apt-get) when no initdb is found.
# The cluster lives in $CXREADER_PG_DIR (default: $TMPDIR/cxreader-postgres-<uid>), listens on 127.0.0.1
# only and trusts every local connection: it is for tests, never for data.
set -euo pipefail

STATE_DIR="${CXREADER_PG_DIR:-${TMPDIR:-/tmp}/cxreader-postgres-$(id -u)}"
DATA_DIR="$STATE_DIR/data"
SOCKET_DIR="$STATE_DIR/socket"
LOG_FILE="$STATE_DIR/server.log"
PORT_FILE="$STATE_DIR/port"
DB_NAME="cxreader_test"
DB_USER="postgres"

log() { echo "postgres.sh: $*" >&2; }

find_bin_dir() {
    # Debian keeps the server programs out of PATH, in /usr/lib/postgresql/<major>/bin.
    local candidate
    for candidate in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -n -r); do
        if [[ -x "$candidate/initdb" && -x "$candidate/pg_ctl" ]]; then
            echo "$candidate"
            return 0
        fi
    done
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v pg_ctl)"
        return 0
    fi
    return 1
}

install_postgres() {
    if [[ $(id -u) -ne 0 ]]; then
        log "PostgreSQL is not installed and installing it needs root: run 'apt-get install -y postgresql' as root"
        exit 1
    fi
    log "installing PostgreSQL from the Debian packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update >&2
    apt-get install -y postgresql >&2
}

# Runs a command as the cluster's owner: PostgreSQL refuses to run as root.
as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        # From a directory the owner can enter (root's home is not one of them).
        (cd / && runuser -u "$OWNER" -- "$@")
    else
        "$@"
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

is_running() {
    [[ -d "$DATA_DIR" ]] && as_owner "$BIN_DIR/pg_ctl" -D "$DATA_DIR" status >/dev/null 2>&1
}

url() {
    echo "postgresql+psycopg://$DB_USER@127.0.0.1:$(cat "$PORT_FILE")/$DB_NAME"
}

setup_owner() {
    OWNER="$(id -un)"
    if [[ $(id -u) -eq 0 ]]; then
        OWNER="postgres"
        if ! id "$OWNER" >/dev/null 2>&1; then
            log "creating the system user $OWNER"
            useradd --system --home-dir "$STATE_DIR" --shell /usr/sbin/nologin "$OWNER"
        fi
    fi
}

start() {
    BIN_DIR="$(find_bin_dir)" || { install_postgres; BIN_DIR="$(find_bin_dir)"; }
    setup_owner
    if is_running; then
        log "reusing the server running from $DATA_DIR"
    else
        mkdir -p "$STATE_DIR" "$SOCKET_DIR"
        chown -R "$OWNER" "$STATE_DIR"
        if ! as_owner test -w "$STATE_DIR" -a -x "$STATE_DIR"; then
            log "user $OWNER cannot enter $STATE_DIR (a parent directory is closed to it): set CXREADER_PG_DIR"
            exit 1
        fi
        if [[ ! -f "$DATA_DIR/PG_VERSION" ]]; then
            rm -rf "$DATA_DIR"
            mkdir -p "$DATA_DIR"
            chown -R "$OWNER" "$STATE_DIR"
            chmod 700 "$DATA_DIR"
            log "initialising a cluster in $DATA_DIR"
            as_owner "$BIN_DIR/initdb" -D "$DATA_DIR" -U "$DB_USER" --auth=trust --encoding=UTF8 --no-locale \
                >"$STATE_DIR/initdb.log" 2>&1 || { cat "$STATE_DIR/initdb.log" >&2; exit 1; }
        fi
        free_port >"$PORT_FILE"
        chown -R "$OWNER" "$STATE_DIR"
        log "starting PostgreSQL on 127.0.0.1:$(cat "$PORT_FILE")"
        # Durability is pointless for a throwaway test cluster; skipping fsync makes the tests faster.
        if ! as_owner "$BIN_DIR/pg_ctl" -D "$DATA_DIR" -l "$LOG_FILE" -w -t 60 start \
            -o "-c listen_addresses=127.0.0.1 -p $(cat "$PORT_FILE") -k $SOCKET_DIR -c fsync=off \
                -c synchronous_commit=off -c full_page_writes=off" >&2; then
            cat "$LOG_FILE" >&2
            exit 1
        fi
    fi
    local port
    port="$(cat "$PORT_FILE")"
    if ! as_owner "$BIN_DIR/psql" -h 127.0.0.1 -p "$port" -U "$DB_USER" -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'" | grep -q 1; then
        as_owner "$BIN_DIR/createdb" -h 127.0.0.1 -p "$port" -U "$DB_USER" "$DB_NAME"
    fi
    echo "export CXREADER_TEST_POSTGRES_URL=$(url)"
}

stop() {
    BIN_DIR="$(find_bin_dir)" || { log "PostgreSQL is not installed: nothing to stop"; return 0; }
    setup_owner
    if is_running; then
        log "stopping the server of $DATA_DIR"
        as_owner "$BIN_DIR/pg_ctl" -D "$DATA_DIR" -m fast -w stop >&2
    fi
    rm -rf "$STATE_DIR"
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    url)
        [[ -f "$PORT_FILE" ]] || { log "no server started from $STATE_DIR"; exit 1; }
        echo "export CXREADER_TEST_POSTGRES_URL=$(url)"
        ;;
    *)
        echo "usage: $0 [start|url|stop]" >&2
        exit 2
        ;;
esac
