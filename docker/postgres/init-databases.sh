# Sourced by the postgres image's entry point once, when the data directory is created:
# the Dagster storage database (runs, event log = the offset ledger, schedules) and the
# destination database (current state; schema cdc_meta holds the quarantine and the token
# vault), each owned by its own role. Passwords come from compose secrets.

cdc_init_dagster_password="$(cat /run/secrets/dagster_pg_password)"
cdc_init_cdc_password="$(cat /run/secrets/cdc_pg_password)"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v dagster_user="$DAGSTER_PG_USERNAME" -v dagster_db="$DAGSTER_PG_DB" \
    -v dagster_password="$cdc_init_dagster_password" \
    -v cdc_user="$CDC_PG_USERNAME" -v cdc_db="$CDC_PG_DB" \
    -v cdc_password="$cdc_init_cdc_password" <<'SQL'
CREATE ROLE :"dagster_user" LOGIN PASSWORD :'dagster_password';
CREATE DATABASE :"dagster_db" OWNER :"dagster_user";
CREATE ROLE :"cdc_user" LOGIN PASSWORD :'cdc_password';
CREATE DATABASE :"cdc_db" OWNER :"cdc_user";
SQL
unset cdc_init_dagster_password cdc_init_cdc_password
