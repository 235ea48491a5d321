-- Materialized candles on plain PostgreSQL (portable mode): one table, tickpipe_candle,
-- kept by triggers on crypto_ticks in the writer's own transaction, so every writer keeps
-- the candles exact (ingest, backfill's bars, the tutorial's INSERT, psql, a quarantine
-- replay) and a candle is visible the moment its tick commits. The views one_minute_candle,
-- one_hour_candle and one_day_candle (same names and columns as before, and as TimescaleDB
-- mode) and tickpipe_candles(unit, t0, t1) now read only the buckets they return.
--
-- A row per (unit, symbol, bucket), unit 'minute', 'hour' or 'day', bucket
-- date_trunc(unit, time, 'UTC'), computed as date_bin(1 unit, time, epoch): the same
-- instant, without date_trunc's time zone lookup per row (a third of a batch's cost).
-- Besides the candle it carries what merging needs: the seq
-- of its open, close and last day_volume. Candles follow the rules of 008: open/close by
-- seq, ticks count streamed ticks only, filled the minutes filled from REST bars, and in a
-- minute with streamed ticks the bar rows do not count.
--
-- How each write keeps them (docs/candles.md has the costs):
--   INSERT   one statement-level trigger reads the statement's new rows (a transition
--            table) and merges them into the minute, hour and day rows they fall in: one
--            upsert per (unit, symbol, bucket), whatever the statement's size. Merging is
--            exact (min/max, sums, first/last by seq) except where a minute switches between
--            "filled from bars" and "has ticks" (a bar row in the statement, or a tick in a
--            filled minute): those (symbol, UTC day)s are rebuilt from the ticks instead.
--   UPDATE   the (symbol, day)s of the old and new rows are rebuilt (backfill moves volume).
--   DELETE   likewise, except the retention's own deletes (tickpipe.retention = 'on'), which
--   TRUNCATE leave every candle as it is; TRUNCATE empties the candles too.
-- A rebuild never reaches below the retention horizon (tickpipe_retention.horizon): the
-- ticks there are gone, so their days keep their candles and take merges only (migration
-- 009). Existing ticks are turned into candles right after this SQL, in the same
-- transaction, day by day with progress (lib/candles/build.ts).
--
-- Concurrency: every trigger first takes a transaction-level advisory lock per symbol
-- (class 7317, hashtext(symbol), in key order), so a rebuild never misses the rows of a
-- concurrent writer of the same symbol, and upserts go in (unit, symbol, bucket) order.
-- Writers of different symbols do not wait for each other (unless two symbols' hashes
-- meet); writers of one symbol would queue on its current candle rows anyway.

DROP VIEW one_day_candle;
DROP VIEW one_hour_candle;
DROP VIEW one_minute_candle;
DROP FUNCTION tickpipe_candles(text, timestamptz, timestamptz);

CREATE TABLE tickpipe_candle (
  unit TEXT NOT NULL,
  symbol TEXT NOT NULL,
  bucket TIMESTAMPTZ NOT NULL,
  open DOUBLE PRECISION NOT NULL,
  open_seq BIGINT NOT NULL,
  high DOUBLE PRECISION NOT NULL,
  low DOUBLE PRECISION NOT NULL,
  close DOUBLE PRECISION NOT NULL,
  close_seq BIGINT NOT NULL,
  volume NUMERIC,
  pv DOUBLE PRECISION,
  ticks INTEGER NOT NULL,
  filled INTEGER NOT NULL,
  day_volume NUMERIC,
  day_volume_seq BIGINT,
  PRIMARY KEY (unit, symbol, bucket)
) WITH (fillfactor = 90);

CREATE VIEW one_minute_candle AS
SELECT bucket, symbol, open, high, low, close, volume, pv / NULLIF(volume, 0) AS vwap, ticks,
  day_volume, pv, filled
FROM tickpipe_candle WHERE unit = 'minute';

CREATE VIEW one_hour_candle AS
SELECT bucket, symbol, open, high, low, close, volume, pv / NULLIF(volume, 0) AS vwap, ticks,
  day_volume, pv, filled
FROM tickpipe_candle WHERE unit = 'hour';

CREATE VIEW one_day_candle AS
SELECT bucket, symbol, open, high, low, close, volume, pv / NULLIF(volume, 0) AS vwap, ticks,
  day_volume, pv, filled
FROM tickpipe_candle WHERE unit = 'day';

-- The candles of every symbol whose bucket lies in [t0, t1): inlined into the caller, so
-- `FROM tickpipe_candles('day', $from, $to) WHERE symbol = $s` is one primary key range scan.
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
  SELECT c.bucket, c.symbol, c.open, c.high, c.low, c.close, c.volume,
    c.pv / NULLIF(c.volume, 0), c.ticks, c.day_volume, c.pv, c.filled
  FROM tickpipe_candle AS c
  WHERE c.unit = tickpipe_candles.unit AND c.bucket >= t0 AND c.bucket < t1
$$;

-- Rebuilds one symbol's candles of the UTC day starting at `day` from its ticks: minutes
-- from the ticks (bar rows only in minutes without streamed ticks), hours from the minutes,
-- the day from the hours. Used by the triggers, the migration and `deno task refresh`.
CREATE FUNCTION tickpipe_rebuild_day(p_symbol text, day timestamptz) RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
  level text;
  below text;
  step interval;
BEGIN
  DELETE FROM tickpipe_candle AS c
  WHERE c.symbol = p_symbol AND c.bucket >= day AND c.bucket < day + INTERVAL '1 day';
  INSERT INTO tickpipe_candle (unit, symbol, bucket, open, open_seq, high, low, close,
    close_seq, volume, pv, ticks, filled, day_volume, day_volume_seq)
  SELECT 'minute', p_symbol, m.bucket,
    (array_agg(t.price ORDER BY t.seq))[1], min(t.seq), max(t.price), min(t.price),
    (array_agg(t.price ORDER BY t.seq DESC))[1], max(t.seq),
    sum(t.volume), sum(t.price * t.volume),
    (count(*) FILTER (WHERE t.source = 0))::integer,
    (count(*) FILTER (WHERE t.source = 1))::integer,
    (array_agg(t.day_volume ORDER BY t.seq DESC) FILTER (WHERE t.day_volume IS NOT NULL))[1],
    max(t.seq) FILTER (WHERE t.day_volume IS NOT NULL)
  FROM crypto_ticks AS t
  CROSS JOIN LATERAL (SELECT date_bin('1 minute', t."time", 'epoch') AS bucket) AS m
  WHERE t.symbol = p_symbol AND t."time" >= day AND t."time" < day + INTERVAL '1 day'
    AND (t.source = 0 OR NOT EXISTS (
      SELECT 1 FROM crypto_ticks AS k
      WHERE k.symbol = p_symbol AND k.source = 0
        AND k."time" >= m.bucket AND k."time" < m.bucket + INTERVAL '1 minute'))
  GROUP BY m.bucket
  ORDER BY m.bucket;
  FOR level, below, step IN VALUES ('hour', 'minute', INTERVAL '1 hour'),
    ('day', 'hour', INTERVAL '1 day')
  LOOP
    INSERT INTO tickpipe_candle (unit, symbol, bucket, open, open_seq, high, low, close,
      close_seq, volume, pv, ticks, filled, day_volume, day_volume_seq)
    SELECT level, p_symbol, date_bin(step, c.bucket, 'epoch'),
      (array_agg(c.open ORDER BY c.open_seq))[1], min(c.open_seq), max(c.high), min(c.low),
      (array_agg(c.close ORDER BY c.close_seq DESC))[1], max(c.close_seq),
      sum(c.volume), sum(c.pv), sum(c.ticks)::integer, sum(c.filled)::integer,
      (array_agg(c.day_volume ORDER BY c.day_volume_seq DESC)
        FILTER (WHERE c.day_volume_seq IS NOT NULL))[1],
      max(c.day_volume_seq)
    FROM tickpipe_candle AS c
    WHERE c.unit = below AND c.symbol = p_symbol
      AND c.bucket >= day AND c.bucket < day + INTERVAL '1 day'
    GROUP BY 3
    ORDER BY 3;
  END LOOP;
END
$$;

-- Locks the symbols of `symbols` (see the header) and rebuilds their (symbol, day)s in
-- `days` (parallel arrays) that lie at or above the retention horizon.
CREATE FUNCTION tickpipe_rebuild_days(symbols text[], days timestamptz[]) RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
  s text;
  d timestamptz;
BEGIN
  FOR s, d IN
    SELECT DISTINCT k.symbol, k.day FROM unnest(symbols, days) AS k(symbol, day)
    WHERE k.day >= coalesce((SELECT horizon FROM tickpipe_retention), '-infinity')
    ORDER BY 1, 2
  LOOP
    PERFORM tickpipe_rebuild_day(s, d);
  END LOOP;
END
$$;

-- The advisory locks of the header, for the symbols of `symbols`.
CREATE FUNCTION tickpipe_lock_symbols(symbols text[]) RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
  PERFORM pg_advisory_xact_lock(7317, k)
  FROM (SELECT DISTINCT hashtext(s) AS k FROM unnest(symbols) AS s ORDER BY 1) AS keys;
END
$$;

CREATE FUNCTION tickpipe_candles_after_insert() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
  redo_symbols text[];
  redo_days timestamptz[];
  horizon timestamptz := coalesce((SELECT r.horizon FROM tickpipe_retention AS r), '-infinity');
BEGIN
  PERFORM tickpipe_lock_symbols(ARRAY(SELECT DISTINCT n.symbol FROM new_ticks AS n));
  -- The (symbol, day)s where a minute changes kind: rebuilt from the ticks, not merged.
  SELECT array_agg(x.symbol), array_agg(x.day) INTO redo_symbols, redo_days
  FROM (
    SELECT DISTINCT n.symbol, date_bin('1 day', n.minute, 'epoch') AS day
    FROM (
      SELECT symbol, date_bin('1 minute', "time", 'epoch') AS minute, bool_or(source <> 0) AS bars
      FROM new_ticks GROUP BY 1, 2
    ) AS n
    LEFT JOIN tickpipe_candle AS c
      ON c.unit = 'minute' AND c.symbol = n.symbol AND c.bucket = n.minute
    WHERE n.minute >= horizon AND (n.bars OR c.ticks = 0)
  ) AS x;

  WITH m AS (
    SELECT n.symbol, date_bin('1 minute', n."time", 'epoch') AS bucket,
      (array_agg(n.price ORDER BY n.seq))[1] AS open, min(n.seq) AS open_seq,
      max(n.price) AS high, min(n.price) AS low,
      (array_agg(n.price ORDER BY n.seq DESC))[1] AS close, max(n.seq) AS close_seq,
      sum(n.volume) AS volume, sum(n.price * n.volume) AS pv,
      (count(*) FILTER (WHERE n.source = 0))::integer AS ticks,
      (count(*) FILTER (WHERE n.source = 1))::integer AS filled,
      (array_agg(n.day_volume ORDER BY n.seq DESC) FILTER (WHERE n.day_volume IS NOT NULL))[1]
        AS day_volume,
      max(n.seq) FILTER (WHERE n.day_volume IS NOT NULL) AS day_volume_seq
    FROM new_ticks AS n
    WHERE redo_symbols IS NULL OR (n.symbol, date_bin('1 day', n."time", 'epoch')) NOT IN (
      SELECT * FROM unnest(redo_symbols, redo_days))
    GROUP BY 1, 2
  ), delta AS (
    SELECT 'minute' AS unit, * FROM m
    UNION ALL
    SELECT u.unit, m.symbol, date_bin(u.step, m.bucket, 'epoch'),
      (array_agg(m.open ORDER BY m.open_seq))[1], min(m.open_seq), max(m.high), min(m.low),
      (array_agg(m.close ORDER BY m.close_seq DESC))[1], max(m.close_seq),
      sum(m.volume), sum(m.pv), sum(m.ticks)::integer, sum(m.filled)::integer,
      (array_agg(m.day_volume ORDER BY m.day_volume_seq DESC)
        FILTER (WHERE m.day_volume_seq IS NOT NULL))[1],
      max(m.day_volume_seq)
    FROM m CROSS JOIN (VALUES ('hour', INTERVAL '1 hour'), ('day', INTERVAL '1 day')) AS u(unit, step)
    GROUP BY 1, 2, 3
  )
  INSERT INTO tickpipe_candle AS c (unit, symbol, bucket, open, open_seq, high, low, close,
    close_seq, volume, pv, ticks, filled, day_volume, day_volume_seq)
  SELECT * FROM delta ORDER BY 1, 2, 3
  ON CONFLICT (unit, symbol, bucket) DO UPDATE SET
    open = CASE WHEN EXCLUDED.open_seq < c.open_seq THEN EXCLUDED.open ELSE c.open END,
    open_seq = least(c.open_seq, EXCLUDED.open_seq),
    high = greatest(c.high, EXCLUDED.high),
    low = least(c.low, EXCLUDED.low),
    close = CASE WHEN EXCLUDED.close_seq > c.close_seq THEN EXCLUDED.close ELSE c.close END,
    close_seq = greatest(c.close_seq, EXCLUDED.close_seq),
    -- Sums of possibly NULL parts, NULL only when both are (as sum() over their rows).
    volume = CASE WHEN c.volume IS NULL THEN EXCLUDED.volume
      WHEN EXCLUDED.volume IS NULL THEN c.volume ELSE c.volume + EXCLUDED.volume END,
    pv = CASE WHEN c.pv IS NULL THEN EXCLUDED.pv
      WHEN EXCLUDED.pv IS NULL THEN c.pv ELSE c.pv + EXCLUDED.pv END,
    ticks = c.ticks + EXCLUDED.ticks,
    filled = c.filled + EXCLUDED.filled,
    day_volume = CASE WHEN EXCLUDED.day_volume_seq > coalesce(c.day_volume_seq, -1)
      THEN EXCLUDED.day_volume ELSE c.day_volume END,
    day_volume_seq = greatest(c.day_volume_seq, EXCLUDED.day_volume_seq);

  IF redo_symbols IS NOT NULL THEN
    PERFORM tickpipe_rebuild_days(redo_symbols, redo_days);
  END IF;
  RETURN NULL;
END
$$;

-- UPDATE and DELETE: rebuild the (symbol, day)s the changed rows were and are in.
CREATE FUNCTION tickpipe_candles_after_change() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
  symbols text[];
  days timestamptz[];
BEGIN
  IF TG_OP = 'DELETE' AND current_setting('tickpipe.retention', true) = 'on' THEN
    RETURN NULL;
  END IF;
  IF TG_OP = 'UPDATE' THEN
    SELECT array_agg(k.symbol), array_agg(k.day) INTO symbols, days FROM (
      SELECT symbol, date_bin('1 day', "time", 'epoch') AS day FROM old_ticks
      UNION SELECT symbol, date_bin('1 day', "time", 'epoch') FROM new_ticks
    ) AS k;
  ELSE
    SELECT array_agg(k.symbol), array_agg(k.day) INTO symbols, days FROM (
      SELECT DISTINCT symbol, date_bin('1 day', "time", 'epoch') AS day FROM old_ticks
    ) AS k;
  END IF;
  IF symbols IS NOT NULL THEN
    PERFORM tickpipe_lock_symbols(symbols);
    PERFORM tickpipe_rebuild_days(symbols, days);
  END IF;
  RETURN NULL;
END
$$;

CREATE FUNCTION tickpipe_candles_after_truncate() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
  TRUNCATE tickpipe_candle;
  RETURN NULL;
END
$$;

CREATE TRIGGER crypto_ticks_candles_insert
AFTER INSERT ON crypto_ticks REFERENCING NEW TABLE AS new_ticks
FOR EACH STATEMENT EXECUTE FUNCTION tickpipe_candles_after_insert();

CREATE TRIGGER crypto_ticks_candles_update
AFTER UPDATE ON crypto_ticks REFERENCING OLD TABLE AS old_ticks NEW TABLE AS new_ticks
FOR EACH STATEMENT EXECUTE FUNCTION tickpipe_candles_after_change();

CREATE TRIGGER crypto_ticks_candles_delete
AFTER DELETE ON crypto_ticks REFERENCING OLD TABLE AS old_ticks
FOR EACH STATEMENT EXECUTE FUNCTION tickpipe_candles_after_change();

CREATE TRIGGER crypto_ticks_candles_truncate
AFTER TRUNCATE ON crypto_ticks
FOR EACH STATEMENT EXECUTE FUNCTION tickpipe_candles_after_truncate();
