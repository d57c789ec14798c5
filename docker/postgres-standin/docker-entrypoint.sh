#!/usr/bin/env bash
# Entrypoint of the PostgreSQL 15 stand-in (docker/postgres-standin/Dockerfile): the subset of the
# official postgres image's docker-entrypoint.sh that docker-compose.yml uses.
#
#   docker-entrypoint.sh postgres [server options]
#
# As root: prepares PGDATA and the socket directory, then re-executes itself as `postgres`.
# On an empty PGDATA: initdb with POSTGRES_USER (default postgres) and POSTGRES_PASSWORD (required),
# creates POSTGRES_DB (default POSTGRES_USER) unless it is `postgres`, runs every
# /docker-entrypoint-initdb.d/*.sh (executed when executable, sourced otherwise) and *.sql against a
# temporary server that listens on the Unix socket only, then stops it. Finally execs the server,
# listening on all addresses; TCP connections authenticate with scram-sha-256, local ones are trusted
# (the official defaults). Passwords are never printed.
set -Eeo pipefail

if [ "${1:0:1}" = '-' ]; then
  set -- postgres "$@"
fi

if [ "$1" != 'postgres' ]; then
  exec "$@"
fi

if [ "$(id -u)" = '0' ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  chmod 2777 /var/run/postgresql
  exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "docker-entrypoint: POSTGRES_PASSWORD must be set (this stand-in has no trust mode)" >&2
    exit 1
  fi
  export POSTGRES_USER="${POSTGRES_USER:-postgres}"
  export POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
  echo "docker-entrypoint: initialising $PGDATA"
  initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
         --encoding=UTF8 --locale=C.UTF-8 -D "$PGDATA" >/dev/null
  {
    echo
    echo "listen_addresses = '*'"
  } >> "$PGDATA/postgresql.conf"
  {
    echo
    echo "host all all all scram-sha-256"
  } >> "$PGDATA/pg_hba.conf"

  # Temporary server on the Unix socket only: nothing reaches it over TCP (and a TCP health check
  # stays red) until the init scripts are done.
  pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  export PGPASSWORD="${PGPASSWORD:-$POSTGRES_PASSWORD}"
  if [ "$POSTGRES_DB" != 'postgres' ]; then
    psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet --username "$POSTGRES_USER" --dbname postgres \
         --set db="$POSTGRES_DB" <<'EOSQL'
CREATE DATABASE :"db";
EOSQL
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh)
        if [ -x "$f" ]; then
          echo "docker-entrypoint: running $f"
          "$f"
        else
          echo "docker-entrypoint: sourcing $f"
          # shellcheck disable=SC1090
          . "$f"
        fi
        ;;
      *.sql)
        echo "docker-entrypoint: running $f"
        psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" -f "$f"
        ;;
      *) if [ -e "$f" ]; then echo "docker-entrypoint: ignoring $f"; fi ;;
    esac
  done
  unset PGPASSWORD
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  echo "docker-entrypoint: init done; ready for start up"
fi

exec "$@"
