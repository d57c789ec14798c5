#!/usr/bin/env bash
# PostgreSQL first-start initialisation for the stock_assets stack.
#
# docker-compose.yml mounts this file into /docker-entrypoint-initdb.d/ of the postgres:15
# service; the official image runs it ONCE, when the data volume is empty (to re-run it, remove
# the `pgdata` volume). It creates one unprivileged login role for the applications and one
# database per component, all owned by that role:
#
#   dagster    Dagster instance storage (runs, event log, schedules)   DAGSTER_PG_DB
#   warehouse  tabular assets (prices, features, predictions, ...)     STOCK_ASSETS_DATABASE_URL
#   mlflow     MLflow tracking + model registry backend store          mlflow --backend-store-uri
#   optuna     Optuna studies (RDB storage)                            STOCK_ASSETS_OPTUNA_STORAGE
#
# Separate databases, not one: Dagster, MLflow and Optuna each manage their schema with Alembic
# and each keeps its own `alembic_version` table in `public`; in a single database they would
# overwrite each other's migration state. Separate databases also let you back up, restore or
# move each store on its own.
#
# Inputs (environment of the postgres service): POSTGRES_USER / POSTGRES_DB (superuser session,
# set by the image), APP_DB_USER, APP_DB_PASSWORD, optional APP_DATABASES (space-separated).
# Idempotent: existing roles/databases are left alone.
#
# No `set -u`: when the file is not executable the image *sources* it into its own shell.
set -eo pipefail

if [ -z "${APP_DB_USER:-}" ] || [ -z "${APP_DB_PASSWORD:-}" ]; then
  echo "postgres-init: APP_DB_USER and APP_DB_PASSWORD must be set" >&2
  exit 1
fi
APP_DATABASES="${APP_DATABASES:-dagster warehouse mlflow optuna}"

stock_assets_psql() {
  psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet \
       --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" "$@"
}

stock_assets_psql -v app_user="$APP_DB_USER" -v app_password="$APP_DB_PASSWORD" <<'EOSQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'app_user', :'app_password')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'app_user') \gexec
EOSQL

for db in $APP_DATABASES; do
  stock_assets_psql -v app_user="$APP_DB_USER" -v db="$db" <<'EOSQL'
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'app_user')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT ALL ON DATABASE :"db" TO :"app_user";
EOSQL
  echo "postgres-init: database ${db} owned by ${APP_DB_USER}"
done
