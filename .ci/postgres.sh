#!/usr/bin/env bash
# PostgreSQL for CI (issue 21): the platform's tests run on SQLite and on PostgreSQL.
#
#   .ci/postgres.sh install   Debian's postgresql when initdb is absent (apt-get; root or sudo). Enough for
#                             `make test`: tests/postgres_support.py then starts a throwaway cluster per
#                             test process by itself.
#   .ci/postgres.sh start     one cluster for the whole run, in a temporary folder on a Unix socket; prints
#                             `export STATION_TEST_POSTGRES_URL=...` for eval:  eval "$(.ci/postgres.sh start)"
#   .ci/postgres.sh stop      stops it and removes its folder
#
# Never fails CI: when PostgreSQL cannot be installed or started it says why on stderr, prints nothing to
# eval and exits 0; the PostgreSQL cases are then skipped with the reason and the SQLite ones still run.
set -uo pipefail

DIR="${STATION_CI_PG_DIR:-${TMPDIR:-/tmp}/station-ci-postgres}"
PORT=5432  # names the socket file only: the server listens on no TCP port

say() { echo "postgres.sh: $*" >&2; }

find_bin() {
    local initdb
    initdb="$(command -v initdb 2>/dev/null)"
    if [ -n "$initdb" ] && [ -x "$(dirname "$initdb")/postgres" ]; then dirname "$initdb"; return 0; fi
    initdb="$(ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1)"
    if [ -n "$initdb" ]; then dirname "$initdb"; return 0; fi
    return 1
}

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo "$@"
    else return 1; fi
}

install() {
    if find_bin >/dev/null; then say "PostgreSQL found in $(find_bin)"; return 0; fi
    if ! command -v apt-get >/dev/null 2>&1; then
        say "no initdb and no apt-get: install PostgreSQL to run the platform's PostgreSQL tests (skipped)"; return 0
    fi
    # Debian's package makes and starts a default cluster; ours are throwaway, so ask it not to (if unset).
    if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
        as_root mkdir -p /etc/postgresql-common 2>/dev/null &&
            echo "create_main_cluster = false" | as_root tee /etc/postgresql-common/createcluster.conf >/dev/null
    fi
    say "installing Debian's postgresql (apt-get)"
    if ! as_root env DEBIAN_FRONTEND=noninteractive timeout 600 apt-get update -qq >/dev/null 2>&1 ||
       ! as_root env DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq --no-install-recommends \
            postgresql >/dev/null 2>&1; then
        say "apt-get install postgresql failed (no root, no network?): the PostgreSQL tests will be skipped"; return 0
    fi
    if find_bin >/dev/null; then say "PostgreSQL installed in $(find_bin)";
    else say "postgresql installed but initdb not found: the PostgreSQL tests will be skipped"; fi
    return 0
}

start() {
    local bin owner=() log
    if ! bin="$(find_bin)"; then
        say "initdb not found (run: .ci/postgres.sh install): PostgreSQL tests skipped"; return 0
    fi
    stop >/dev/null 2>&1
    mkdir -p "$DIR/sock" || { say "cannot create $DIR: PostgreSQL tests skipped"; return 0; }
    chmod 700 "$DIR"
    if [ "$(id -u)" = 0 ]; then
        # PostgreSQL refuses to run as root: the cluster belongs to nobody.
        if ! chown nobody "$DIR" "$DIR/sock" 2>/dev/null; then
            say "cannot hand $DIR to nobody: PostgreSQL tests skipped"; return 0
        fi
        if command -v runuser >/dev/null 2>&1; then owner=(runuser -u nobody --);
        elif command -v setpriv >/dev/null 2>&1; then owner=(setpriv --reuid=nobody --regid=nogroup --clear-groups);
        else say "running as root without runuser or setpriv: PostgreSQL tests skipped"; return 0; fi
    fi
    log="$DIR/initdb.log"
    if ! (cd "$DIR" && LC_ALL=C "${owner[@]}" "$bin/initdb" -D "$DIR/data" -U station --auth=trust -E UTF8 \
            --locale=C --no-sync --no-instructions) >"$log" 2>&1; then
        say "initdb failed: $(tail -n 1 "$log"): PostgreSQL tests skipped"; return 0
    fi
    if ! (cd "$DIR" && "${owner[@]}" "$bin/pg_ctl" -D "$DIR/data" -l "$DIR/postgres.log" -w -t 60 start \
            -o "-k $DIR/sock -p $PORT -c listen_addresses= -c max_connections=200 -c fsync=off \
                -c synchronous_commit=off -c full_page_writes=off") \
            >/dev/null 2>&1; then
        say "postgres did not start: $(tail -n 1 "$DIR/postgres.log" 2>/dev/null): PostgreSQL tests skipped"; return 0
    fi
    say "PostgreSQL running in $DIR"
    echo "export STATION_TEST_POSTGRES_URL='postgresql+psycopg://station@/postgres?host=$DIR/sock&port=$PORT'"
}

stop() {
    local bin
    if [ -d "$DIR/data" ] && bin="$(find_bin)"; then
        local owner=()
        if [ "$(id -u)" = 0 ] && command -v runuser >/dev/null 2>&1; then owner=(runuser -u nobody --); fi
        (cd "$DIR" && "${owner[@]}" "$bin/pg_ctl" -D "$DIR/data" -m fast -w stop) >/dev/null 2>&1
    fi
    rm -rf "$DIR"
    return 0
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
exit 0
