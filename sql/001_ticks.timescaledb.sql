-- Ticks and assets on TimescaleDB 2.20 or later: crypto_ticks is a hypertable whose
-- columnstore is segmented by symbol and ordered by time, newest first.
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
) WITH (
  tsdb.hypertable,
  tsdb.partition_column = 'time',
  tsdb.chunk_interval = '1 day',
  tsdb.segmentby = 'symbol',
  tsdb.orderby = 'time DESC'
);

CREATE INDEX IF NOT EXISTS crypto_ticks_symbol_time_idx ON crypto_ticks (symbol, "time" DESC);

-- CREATE TABLE ... WITH (tsdb.hypertable) already adds a columnstore policy (after one
-- chunk interval); this states it explicitly and is a no-op when it exists.
CALL add_columnstore_policy('crypto_ticks', after => INTERVAL '1 day', if_not_exists => true);
