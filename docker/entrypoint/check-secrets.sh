#!/bin/sh
# Entrypoint of every stock_assets container (the app image's ENTRYPOINT; the postgres service runs
# it before the image's own entrypoint): refuses to start while a password is empty or still the
# change-me placeholder of docker/.env.example, or while a mounted Docker socket is not usable,
# then runs the container's command.
#
# Checked when set: the *_PASSWORD variables below and the password inside the database URLs.
# Values are never printed.
#
# Then, when APP_DB_PASSWORD holds characters that are not URL-safe (@ : / % ? # ...), replaces the
# raw password inside the database URLs (":<raw>@") by its percent-encoding: compose substitutes the
# raw value and cannot encode it. Needs python3 (the app image has it); URL-safe passwords (letters,
# digits, - . _ ~) are left as they are. Containers started by the DockerRunLauncher inherit the
# encoded URLs from the daemon.
set -eu

PASSWORD_VARS="POSTGRES_PASSWORD APP_DB_PASSWORD DAGSTER_PG_PASSWORD"
URL_VARS="STOCK_ASSETS_DATABASE_URL STOCK_ASSETS_OPTUNA_STORAGE MLFLOW_BACKEND_STORE_URI MLFLOW_TRACKING_URI"

refused=""

# Refused: empty, the change-me placeholder, a password shorter than 10 characters, or a common word
# (password, postgres, admin, ... : the first guesses of any scanner). docs/inputs-and-secrets.md.
placeholder() {  # $1: a password
  lower=$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]')
  case "$lower" in
    "" | *change-me* | *changeme*) return 0 ;;
    password | password1 | password123 | passw0rd | postgres | postgresql | admin | administrator | root | \
    secret | letmein | qwerty | qwertyuiop | 123456 | 12345678 | 123456789 | 1234567890 | dagster | mlflow | \
    stock_assets | stockassets | welcome | default | changeit) return 0 ;;
  esac
  [ "${#1}" -lt 10 ]
}

for name in $PASSWORD_VARS; do
  eval "set_=\${$name+x}"
  [ -n "$set_" ] || continue
  eval "value=\$$name"
  if placeholder "$value"; then refused="$refused $name"; fi
done

for name in $URL_VARS; do
  eval "set_=\${$name+x}"
  [ -n "$set_" ] || continue
  eval "value=\$$name"
  # The raw application password inside the URL (compose substitutes it unencoded, with any '/', '@'
  # or ':' it holds): it was checked as APP_DB_PASSWORD above, and is encoded below.
  if [ -n "${APP_DB_PASSWORD:-}" ]; then
    case "$value" in *":${APP_DB_PASSWORD}@"*) continue ;; esac
  fi
  rest=${value#*://}
  authority=${rest%%/*}
  case "$authority" in *@*) ;; *) continue ;; esac  # no user info: nothing secret in it
  userinfo=${authority%@*}
  case "$userinfo" in *:*) ;; *) continue ;; esac
  if placeholder "${userinfo#*:}"; then refused="$refused $name"; fi
done

# The daemon and the webserver get the engine's socket (docker-compose.yml): without the socket's
# group the DockerRunLauncher would fail every launch with "permission denied", so say it up front.
if [ -S /var/run/docker.sock ] && [ ! -w /var/run/docker.sock ]; then
  echo "check-secrets: /var/run/docker.sock is not writable by uid $(id -u) (groups: $(id -G)): set" \
       "DOCKER_SOCKET_GID in docker/.env to the socket's group (stat -c %g /var/run/docker.sock); not starting." >&2
  exit 64
fi

if [ -n "$refused" ]; then
  for name in $refused; do
    echo "check-secrets: $name holds an empty, weak (a common word, or under 10 characters) or change-me placeholder password." >&2
  done
  echo "check-secrets: set real passwords in docker/.env (e.g. \`openssl rand -hex 24\`), then" \
       "recreate the containers; not starting." >&2
  exit 64
fi

case "${APP_DB_PASSWORD:-}" in
  *[!A-Za-z0-9._~-]*)
    if command -v python3 >/dev/null 2>&1; then
      encoded=$(URL_VARS="$URL_VARS" python3 -E -S -c '
import os, shlex, urllib.parse
raw = os.environ["APP_DB_PASSWORD"]
for name in os.environ["URL_VARS"].split():
    value = os.environ.get(name)
    if value and ":" + raw + "@" in value:
        value = value.replace(":" + raw + "@", ":" + urllib.parse.quote(raw, safe="") + "@", 1)
        print("export " + name + "=" + shlex.quote(value))
')
      eval "$encoded"
    fi
    ;;
esac

exec "$@"
