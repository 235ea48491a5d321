-- Complete candles over filled gaps (TimescaleDB mode): REST 1-minute bars live in
-- crypto_ticks itself, marked, because a continuous aggregate reads one hypertable and
-- cannot UNION a second table: a separate bar table would leave the candles incomplete.
-- Their columnstore follows (the 003 columnstore file, or its _legacy variant).
--
-- source: 0 a streamed tick; 1, 2, 3, 4 the open, high, low and close point of a REST
-- 1-minute bar, at the start of its minute, seq = minute in µs + 0..3, a quarter of the
-- bar's volume each (the close row taking the rest), day_volume/bid/ask NULL (see
-- 008_candle_provenance.portable.sql).
--
-- The aggregates are rebuilt (a continuous aggregate's query cannot be altered), WITH NO
-- DATA like in 003: `tickpipe setup` refreshes them over the whole history right after this
-- migration. Same columns as before plus filled (minutes filled from REST bars); ticks
-- counts streamed ticks only. In a minute with both ticks and bar rows (a tick that arrived
-- after the minute was filled) the ticks win: every minute-level aggregate below ignores bar
-- rows when the minute has a tick. open/close order bar rows after/before every tick
-- (seq ± 2^62), high/low/volume/pv take the ticks' values when there are ticks, and
-- day_volume is the last non-NULL running day volume (first()/last() skip NULL orderings).
-- Windows and policies are those of 003.
ALTER TABLE crypto_ticks ADD COLUMN IF NOT EXISTS source SMALLINT NOT NULL DEFAULT 0;

DROP MATERIALIZED VIEW one_day_candle;
DROP MATERIALIZED VIEW one_hour_candle;
DROP MATERIALIZED VIEW one_minute_candle;

CREATE MATERIALIZED VIEW one_minute_candle
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT
  time_bucket(INTERVAL '1 minute', "time") AS bucket,
  symbol,
  first(price, CASE WHEN source = 0 THEN seq ELSE seq + 4611686018427387904 END) AS open,
  coalesce(max(CASE WHEN source = 0 THEN price END), max(price)) AS high,
  coalesce(min(CASE WHEN source = 0 THEN price END), min(price)) AS low,
  last(price, CASE WHEN source = 0 THEN seq ELSE seq - 4611686018427387904 END) AS close,
  CASE WHEN sum(CASE WHEN source = 0 THEN 1 ELSE 0 END) > 0
    THEN sum(CASE WHEN source = 0 THEN volume END) ELSE sum(volume) END AS volume,
  CASE WHEN sum(CASE WHEN source = 0 THEN 1 ELSE 0 END) > 0
    THEN sum(CASE WHEN source = 0 THEN price * volume END)
      / NULLIF(sum(CASE WHEN source = 0 THEN volume END), 0)
    ELSE sum(price * volume) / NULLIF(sum(volume), 0) END AS vwap,
  sum(CASE WHEN source = 0 THEN 1 ELSE 0 END)::integer AS ticks,
  last(day_volume, CASE WHEN day_volume IS NOT NULL THEN seq END) AS day_volume,
  CASE WHEN sum(CASE WHEN source = 0 THEN 1 ELSE 0 END) > 0
    THEN sum(CASE WHEN source = 0 THEN price * volume END) ELSE sum(price * volume) END AS pv,
  CASE WHEN sum(CASE WHEN source = 0 THEN 1 ELSE 0 END) = 0 THEN 1 ELSE 0 END AS filled
FROM crypto_ticks
GROUP BY time_bucket(INTERVAL '1 minute', "time"), symbol
WITH NO DATA;

CREATE MATERIALIZED VIEW one_hour_candle
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT
  time_bucket(INTERVAL '1 hour', bucket) AS bucket,
  symbol,
  first(open, bucket) AS open,
  max(high) AS high,
  min(low) AS low,
  last(close, bucket) AS close,
  sum(volume) AS volume,
  sum(pv) / NULLIF(sum(volume), 0) AS vwap,
  sum(ticks)::integer AS ticks,
  last(day_volume, CASE WHEN day_volume IS NOT NULL THEN bucket END) AS day_volume,
  sum(pv) AS pv,
  sum(filled)::integer AS filled
FROM one_minute_candle
GROUP BY time_bucket(INTERVAL '1 hour', bucket), symbol
WITH NO DATA;

CREATE MATERIALIZED VIEW one_day_candle
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT
  time_bucket(INTERVAL '1 day', bucket) AS bucket,
  symbol,
  first(open, bucket) AS open,
  max(high) AS high,
  min(low) AS low,
  last(close, bucket) AS close,
  sum(volume) AS volume,
  sum(pv) / NULLIF(sum(volume), 0) AS vwap,
  sum(ticks)::integer AS ticks,
  last(day_volume, CASE WHEN day_volume IS NOT NULL THEN bucket END) AS day_volume,
  sum(pv) AS pv,
  sum(filled)::integer AS filled
FROM one_hour_candle
GROUP BY time_bucket(INTERVAL '1 day', bucket), symbol
WITH NO DATA;

SELECT add_continuous_aggregate_policy('one_minute_candle',
  start_offset => INTERVAL '1 day', end_offset => INTERVAL '1 minute',
  schedule_interval => INTERVAL '5 minutes', if_not_exists => true);
SELECT add_continuous_aggregate_policy('one_hour_candle',
  start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour',
  schedule_interval => INTERVAL '30 minutes', if_not_exists => true);
SELECT add_continuous_aggregate_policy('one_day_candle',
  start_offset => INTERVAL '7 days', end_offset => INTERVAL '1 hour',
  schedule_interval => INTERVAL '1 hour', if_not_exists => true);
