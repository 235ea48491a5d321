-- OHLCV candles on plain PostgreSQL (portable mode): views over crypto_ticks with the same
-- names and columns as the TimescaleDB continuous aggregates, so they are always current.
--
-- Each level aggregates the ticks directly (not the level below) so that a filter on
-- (symbol, bucket) is pushed down to the tick table and matches the expression indexes
-- below: date_trunc(text, timestamptz, text) is IMMUTABLE, date_trunc(text, timestamptz)
-- is not. Open, close and day_volume come from one array_agg ordered by seq (the ticks'
-- total order, ties within a second included): the planner sorts each group once and
-- shares it between the three.
--
-- Columns: bucket, symbol, open, high, low, close, volume (sum of the ticks' own volume;
-- NULL when the source has none, e.g. forex), vwap (sum(price * volume) / sum(volume),
-- NULL without volume), ticks, day_volume (the last tick's running day volume), pv
-- (sum(price * volume), carried so that coarser candles can be re-aggregated exactly).

CREATE INDEX IF NOT EXISTS crypto_ticks_symbol_minute_idx
  ON crypto_ticks (symbol, date_trunc('minute', "time", 'UTC'));
CREATE INDEX IF NOT EXISTS crypto_ticks_symbol_hour_idx
  ON crypto_ticks (symbol, date_trunc('hour', "time", 'UTC'));
CREATE INDEX IF NOT EXISTS crypto_ticks_symbol_day_idx
  ON crypto_ticks (symbol, date_trunc('day', "time", 'UTC'));

CREATE VIEW one_minute_candle AS
SELECT
  date_trunc('minute', "time", 'UTC') AS bucket,
  symbol,
  (array_agg(price ORDER BY seq))[1] AS open,
  max(price) AS high,
  min(price) AS low,
  (array_agg(price ORDER BY seq))[count(*)] AS close,
  sum(volume) AS volume,
  sum(price * volume) / NULLIF(sum(volume), 0) AS vwap,
  count(*)::integer AS ticks,
  (array_agg(day_volume ORDER BY seq))[count(*)] AS day_volume,
  sum(price * volume) AS pv
FROM crypto_ticks
GROUP BY 1, symbol;

CREATE VIEW one_hour_candle AS
SELECT
  date_trunc('hour', "time", 'UTC') AS bucket,
  symbol,
  (array_agg(price ORDER BY seq))[1] AS open,
  max(price) AS high,
  min(price) AS low,
  (array_agg(price ORDER BY seq))[count(*)] AS close,
  sum(volume) AS volume,
  sum(price * volume) / NULLIF(sum(volume), 0) AS vwap,
  count(*)::integer AS ticks,
  (array_agg(day_volume ORDER BY seq))[count(*)] AS day_volume,
  sum(price * volume) AS pv
FROM crypto_ticks
GROUP BY 1, symbol;

CREATE VIEW one_day_candle AS
SELECT
  date_trunc('day', "time", 'UTC') AS bucket,
  symbol,
  (array_agg(price ORDER BY seq))[1] AS open,
  max(price) AS high,
  min(price) AS low,
  (array_agg(price ORDER BY seq))[count(*)] AS close,
  sum(volume) AS volume,
  sum(price * volume) / NULLIF(sum(volume), 0) AS vwap,
  count(*)::integer AS ticks,
  (array_agg(day_volume ORDER BY seq))[count(*)] AS day_volume,
  sum(price * volume) AS pv
FROM crypto_ticks
GROUP BY 1, symbol;
