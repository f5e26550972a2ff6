#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server for the store's test suite and prints
# the line that points the suite at it:
#
#   eval "$(scripts/postgres-test-server.sh)"
#   cargo test -p takedown-store
#
# On Debian it installs PostgreSQL first if it is missing (this needs root).
# The server lives in a fresh directory under /tmp (or $TAKEDOWN_PG_DIR),
# listens only on a Unix socket in that directory, and trusts local logins:
# it is for tests, never for data you want to keep. Because the data is
# throwaway, it runs without fsync, which makes the suite several times faster;
# TAKEDOWN_PG_DURABLE=1 keeps PostgreSQL's durable defaults instead (for
# benchmarks that compare like with like).
# Stop it with:  scripts/postgres-test-server.sh stop DIR
#
# Everything but the final `export` line goes to stderr.
set -euo pipefail

say() { printf '%s\n' "$*" >&2; }

# The newest installed server binaries (Debian keeps them off PATH).
find_bindir() {
    local d
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [[ -x $d/initdb && -x $d/pg_ctl ]]; then
            echo "$d"
            return
        fi
    done
    if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
        dirname "$(command -v initdb)"
    fi
}

# Runs a server binary as the user that owns the data directory.
as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

if [[ ${1:-} == stop ]]; then
    dir=${2:?usage: $0 stop DIR}
    bindir=$(find_bindir)
    as_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >&2
    rm -rf -- "$dir"
    exit 0
fi

bindir=$(find_bindir)
if [[ -z $bindir ]]; then
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
        say "PostgreSQL is not installed: install it (Debian: apt-get install postgresql) or run this script as root on Debian."
        exit 1
    fi
    say "Installing PostgreSQL..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >/dev/null
    bindir=$(find_bindir)
    if [[ -z $bindir ]]; then
        say "apt-get installed postgresql, but no initdb was found under /usr/lib/postgresql."
        exit 1
    fi
fi

# The server refuses to run as root, so root runs it as the `postgres` user
# that the Debian package creates.
if [[ $(id -u) -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
    say "Running as root, but there is no 'postgres' user to run the server as: create one (useradd --system postgres) or run as another user."
    exit 1
fi

me=$(id -un)
port=${TAKEDOWN_PG_PORT:-54329}
dir=${TAKEDOWN_PG_DIR:-$(mktemp -d /tmp/takedown-pg.XXXXXX)}
mkdir -p "$dir"
if [[ $(id -u) -eq 0 ]]; then
    chown postgres: "$dir"
fi
chmod 0755 "$dir"

if [[ ! -f $dir/data/PG_VERSION ]]; then
    # The bootstrap superuser is named after the caller, so the caller can
    # log in, create schemas and drop them.
    as_owner "$bindir/initdb" -D "$dir/data" -U "$me" --auth=trust \
        --encoding=UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1 || {
        cat "$dir/initdb.log" >&2
        exit 1
    }
fi

settings="-c listen_addresses='' -c unix_socket_directories='$dir' -p $port -c max_connections=200"
if [[ ${TAKEDOWN_PG_DURABLE:-} != 1 ]]; then
    settings="$settings -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
fi
if ! as_owner "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "$settings" \
        start >/dev/null || {
        cat "$dir/server.log" >&2
        exit 1
    }
fi

url="host=$dir port=$port user=$me dbname=postgres"
say "PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') is running in $dir."
say "Stop it with: $0 stop $dir"
printf "export TAKEDOWN_TEST_POSTGRES='%s'\n" "$url"
