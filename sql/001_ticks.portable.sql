-- Ticks and assets on plain PostgreSQL (portable mode): the tutorial's tables and
-- columns, plus what the pipeline needs. Same names as the TimescaleDB mode.
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
  -- This tick's own traded volume: the rise of day_volume since the symbol's previous tick.
  volume NUMERIC,
  -- Total order of a symbol's ticks: "time" in microseconds plus the tick's arrival ordinal
  -- among ticks that share that timestamp (Twelve Data timestamps are whole seconds).
  seq BIGINT NOT NULL
);

CREATE INDEX IF NOT EXISTS crypto_ticks_symbol_time_idx ON crypto_ticks (symbol, "time" DESC);
