-- Complete candles over filled gaps (portable mode): REST 1-minute bars live in crypto_ticks
-- itself, marked, so the one candle definition covers ticks and bars alike.
--
-- source: 0 a streamed tick (every row written by ingest); 1, 2, 3, 4 the open, high, low
-- and close point of a REST 1-minute bar (`deno task backfill`). A bar's four rows sit at
-- the start of its minute with seq = minute in µs + 0..3 (so open and close come first
-- and last by seq), day_volume/bid/ask NULL, and a quarter of the bar's volume each (at the
-- volume's scale, the close row taking the rest): the minute's volume is the bar's, and its
-- pv is about volume * (open + high + low + close) / 4, the usual estimate of a bar's
-- average price. Raw queries that mean streamed ticks only
-- (counts against what was sent, say) add WHERE source = 0.
--
-- The candles:
--   ticks   counts streamed ticks only (0 for a filled minute);
--   filled  counts the minutes filled from REST bars (0 or 1 in a minute candle).
-- A bar only fills a minute without rows (the backfill's guard); should a tick arrive for a
-- minute after it was filled, the tick wins: bar rows count only in minutes without ticks
-- (the NOT EXISTS below: an index probe per bar row, never evaluated for tick rows).
-- day_volume is the last non-NULL running day volume (bars have none).
ALTER TABLE crypto_ticks ADD COLUMN IF NOT EXISTS source SMALLINT NOT NULL DEFAULT 0;

DROP VIEW one_day_candle;
DROP VIEW one_hour_candle;
DROP VIEW one_minute_candle;
DROP FUNCTION tickpipe_candles(text, timestamptz, timestamptz);

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
  pv double precision,
  filled integer
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
    (count(*) FILTER (WHERE t.source = 0))::integer,
    (array_agg(t.day_volume ORDER BY t.seq) FILTER (WHERE t.day_volume IS NOT NULL))
      [count(t.day_volume)],
    sum(t.price * t.volume),
    (count(*) FILTER (WHERE t.source = 1))::integer
  FROM crypto_ticks AS t
  -- ceil(x) = date_trunc(unit, x - 1 µs) + 1 unit; infinities stay as they are.
  WHERE t."time" >= date_trunc(unit, t0 - INTERVAL '1 microsecond', 'UTC')
      + CASE unit WHEN 'minute' THEN INTERVAL '1 minute' WHEN 'hour' THEN INTERVAL '1 hour'
          WHEN 'day' THEN INTERVAL '1 day' END
    AND t."time" < date_trunc(unit, t1 - INTERVAL '1 microsecond', 'UTC')
      + CASE unit WHEN 'minute' THEN INTERVAL '1 minute' WHEN 'hour' THEN INTERVAL '1 hour'
          WHEN 'day' THEN INTERVAL '1 day' END
    AND (t.source = 0 OR NOT EXISTS (
      SELECT 1 FROM crypto_ticks AS k
      WHERE k.symbol = t.symbol AND k.source = 0
        AND k."time" >= t."time" AND k."time" < t."time" + INTERVAL '1 minute'))
  GROUP BY 1, 2
$$;

CREATE VIEW one_minute_candle AS
SELECT bucket, symbol, open, high, low, close, volume, vwap, ticks, day_volume, pv, filled
FROM tickpipe_candles('minute', '-infinity', 'infinity');

CREATE VIEW one_hour_candle AS
SELECT bucket, symbol, open, high, low, close, volume, vwap, ticks, day_volume, pv, filled
FROM tickpipe_candles('hour', '-infinity', 'infinity');

CREATE VIEW one_day_candle AS
SELECT bucket, symbol, open, high, low, close, volume, vwap, ticks, day_volume, pv, filled
FROM tickpipe_candles('day', '-infinity', 'infinity');
