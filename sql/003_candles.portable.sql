-- OHLCV candles on plain PostgreSQL (portable mode): views over crypto_ticks with the same
-- names and columns as the TimescaleDB continuous aggregates, so they are always current.
--
-- One definition for every level and both readers: tickpipe_candles(unit, t0, t1) returns
-- the candles of every symbol whose bucket lies in [t0, t1), and each view is that function
-- over an open range. Open, close and day_volume come from one array_agg ordered by seq (the
-- ticks' total order, ties within a second included): the planner sorts each group once and
-- shares it between the three. Buckets are date_trunc(unit, time, 'UTC'), UTC like
-- TimescaleDB's time_bucket.
--
-- Indexes: none beyond (symbol, "time" DESC) from 001. Expression indexes on
-- (symbol, date_trunc(unit, time, 'UTC')) would let a bucket filter on a view use an index,
-- but three of them cost ~63 % of the insert time. Instead the function turns the bucket
-- range into the tick range it covers: bucket >= t0 <=> time >= ceil(t0), bucket < t1 <=>
-- time < ceil(t1), ceil being the first bucket boundary at or after the instant. Being
-- LANGUAGE sql, STABLE, not STRICT and without SET options, it is inlined into the calling
-- query, so `FROM tickpipe_candles('day', $from, $to) WHERE symbol = $sym` becomes one
-- index range scan on (symbol, time). `deno task candles` reads it that way. The views pass
-- -infinity/infinity (a tick time is never infinite): a filter on a view's symbol still
-- reaches the index, a filter on its bucket is applied to the symbol's ticks (all of them).
--
-- Columns: bucket, symbol, open, high, low, close, volume (sum of the ticks' own volume;
-- NULL when the source has none, e.g. forex), vwap (sum(price * volume) / sum(volume),
-- NULL without volume), ticks, day_volume (the last tick's running day volume), pv
-- (sum(price * volume), carried so that coarser candles can be re-aggregated exactly).
-- unit is 'minute', 'hour' or 'day'; any other unit returns no rows.

CREATE FUNCTION tickpipe_candles(unit text, t0 timestamptz, t1 timestamptz)
RETURNS TABLE (
  bucket timestamptz,
  symbol text,
  open double precision,
  high double precision,
  low double precision,
  close double precision,
  volume numeric,
  vwap double precision,
  ticks integer,
  day_volume numeric,
  pv double precision
)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
  SELECT
    date_trunc(unit, t."time", 'UTC'),
    t.symbol,
    (array_agg(t.price ORDER BY t.seq))[1],
    max(t.price),
    min(t.price),
    (array_agg(t.price ORDER BY t.seq))[count(*)],
    sum(t.volume),
    sum(t.price * t.volume) / NULLIF(sum(t.volume), 0),
    count(*)::integer,
    (array_agg(t.day_volume ORDER BY t.seq))[count(*)],
    sum(t.price * t.volume)
  FROM crypto_ticks AS t
  -- ceil(x) = date_trunc(unit, x - 1 µs) + 1 unit; infinities stay as they are.
  WHERE t."time" >= date_trunc(unit, t0 - INTERVAL '1 microsecond', 'UTC')
      + CASE unit WHEN 'minute' THEN INTERVAL '1 minute' WHEN 'hour' THEN INTERVAL '1 hour'
          WHEN 'day' THEN INTERVAL '1 day' END
    AND t."time" < date_trunc(unit, t1 - INTERVAL '1 microsecond', 'UTC')
      + CASE unit WHEN 'minute' THEN INTERVAL '1 minute' WHEN 'hour' THEN INTERVAL '1 hour'
          WHEN 'day' THEN INTERVAL '1 day' END
  GROUP BY 1, 2
$$;

CREATE VIEW one_minute_candle AS
SELECT bucket, symbol, open, high, low, close, volume, vwap, ticks, day_volume, pv
FROM tickpipe_candles('minute', '-infinity', 'infinity');

CREATE VIEW one_hour_candle AS
SELECT bucket, symbol, open, high, low, close, volume, vwap, ticks, day_volume, pv
FROM tickpipe_candles('hour', '-infinity', 'infinity');

CREATE VIEW one_day_candle AS
SELECT bucket, symbol, open, high, low, close, volume, vwap, ticks, day_volume, pv
FROM tickpipe_candles('day', '-infinity', 'infinity');
