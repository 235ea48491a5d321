-- Ticks and assets on TimescaleDB before 2.20 (which lacks the CREATE TABLE ... WITH syntax):
-- create_hypertable, compression settings and a compression policy, to the same effect.
CREATE EXTENSION IF NOT EXISTS timescaledb;

CREATE TABLE IF NOT EXISTS crypto_assets (
  symbol TEXT UNIQUE,
  name TEXT
);

CREATE TABLE IF NOT EXISTS crypto_ticks (
  "time" TIMESTAMPTZ NOT NULL,
  symbol TEXT NOT NULL,
  price DOUBLE PRECISION NOT NULL,
  day_volume NUMERIC,
  bid DOUBLE PRECISION,
  ask DOUBLE PRECISION,
  volume NUMERIC,
  seq BIGINT NOT NULL
);

SELECT create_hypertable('crypto_ticks', 'time', chunk_time_interval => INTERVAL '1 day',
  if_not_exists => TRUE);

CREATE INDEX IF NOT EXISTS crypto_ticks_symbol_time_idx ON crypto_ticks (symbol, "time" DESC);

ALTER TABLE crypto_ticks SET (
  timescaledb.compress,
  timescaledb.compress_segmentby = 'symbol',
  timescaledb.compress_orderby = 'time DESC'
);

SELECT add_compression_policy('crypto_ticks', INTERVAL '1 day', if_not_exists => TRUE);
