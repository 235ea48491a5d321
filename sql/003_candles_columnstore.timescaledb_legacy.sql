-- Compression on the minute and hour candles (TimescaleDB 2.9 to 2.19), after 003_candles.
-- Compression on a continuous aggregate segments by its GROUP BY columns (symbol) and orders
-- by the bucket by default before 2.25; compress_after plays the role of the columnstore's
-- "after", and stays beyond the refresh window (refresh could not touch compressed chunks
-- before 2.18.1).
ALTER MATERIALIZED VIEW one_minute_candle SET (timescaledb.compress = true);
SELECT add_compression_policy('one_minute_candle', compress_after => INTERVAL '7 days',
  if_not_exists => true);

ALTER MATERIALIZED VIEW one_hour_candle SET (timescaledb.compress = true);
SELECT add_compression_policy('one_hour_candle', compress_after => INTERVAL '35 days',
  if_not_exists => true);
