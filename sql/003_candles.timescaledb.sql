-- OHLCV candles on TimescaleDB 2.9 or later: hierarchical continuous aggregates
-- (1 minute from the ticks, 1 hour from the minutes, 1 day from the hours), all real-time.
-- Their columnstore follows, from 003_candles_columnstore.timescaledb.sql (2.18+) or
-- 003_candles_columnstore.timescaledb_legacy.sql (the compression API, before 2.20).
--
-- Versions: hierarchical continuous aggregates need 2.9; real-time aggregation has been off
-- by default since 2.13, so every level sets timescaledb.materialized_only = false; the
-- columnstore options (timescaledb.enable_columnstore, timescaledb.segmentby) and
-- add_columnstore_policy need 2.18 (the legacy columnstore file uses the compression API);
-- first()/last()/time_bucket() and add_continuous_aggregate_policy() exist in every 2.x.
--
-- WITH NO DATA: migrations run inside a transaction, and a continuous aggregate created
-- WITH DATA refreshes at once, which cannot run in one. The refresh policies (or
-- `tickpipe refresh`) materialize history; real-time aggregation covers the rest meanwhile.
--
-- Exact re-aggregation: every level carries what the next one needs. open/close are
-- first/last by seq (the ticks' total order, ties within a second included) at the minute
-- level and by the lower level's bucket above it; high/low are max/min; volume, pv
-- (sum of price * volume) and ticks are sums; vwap = pv / volume, NULL without volume;
-- day_volume is the last running day volume.
--
-- Windows (each later level's refresh window covers the one below it plus a bucket, and
-- every refresh window stays clear of the same level's columnstore window, since a
-- refresh must not have to rewrite columnstore chunks):
--   level   refresh start / end / every      columnstore after
--   1 min   1 day   / 1 minute / 5 minutes   7 days
--   1 hour  3 days  / 1 hour   / 30 minutes  35 days
--   1 day   7 days  / 1 hour   / 1 hour      none (365 rows per symbol a year: not worth it)
-- crypto_ticks has no retention policy; if one is added, its drop_after must exceed the
-- minute level's refresh start (1 day), or a refresh would erase candles of dropped ticks.

CREATE MATERIALIZED VIEW one_minute_candle
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT
  time_bucket(INTERVAL '1 minute', "time") AS bucket,
  symbol,
  first(price, seq) AS open,
  max(price) AS high,
  min(price) AS low,
  last(price, seq) AS close,
  sum(volume) AS volume,
  sum(price * volume) / NULLIF(sum(volume), 0) AS vwap,
  count(*)::integer AS ticks,
  last(day_volume, seq) AS day_volume,
  sum(price * volume) AS pv
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
  last(day_volume, bucket) AS day_volume,
  sum(pv) AS pv
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
  last(day_volume, bucket) AS day_volume,
  sum(pv) AS pv
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
