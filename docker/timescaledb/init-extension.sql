-- Run once by the timescaledb image's entry point, in $POSTGRES_DB (the change history).
-- The TimescaleDB destination makes hypertables only where the extension is installed; without
-- it, it falls back to native monthly range partitions with a warning.
CREATE EXTENSION IF NOT EXISTS timescaledb;
