-- Rows from other writers: the tutorial's script, psql, or any tool that writes the
-- tutorial's four columns (INSERT INTO crypto_ticks (time, symbol, price, day_volume) ...)
-- leave seq NULL, which its NOT NULL refused. A BEFORE INSERT row trigger gives such a row
-- its seq; same SQL in both modes (TimescaleDB clones a hypertable's row triggers onto
-- every chunk, WHEN clause included).
--
-- seq of an external row: one more than the largest seq already stored for its symbol and
-- exact timestamp, else its time in microseconds (what tickpipe gives the first tick of a
-- timestamp). So external rows sort by time, and rows sharing a timestamp in insertion
-- order after those already stored: candles' open and close are deterministic. A multi-row
-- INSERT (psycopg2's execute_values) or a COPY sees its own earlier rows, since a BEFORE
-- trigger's queries see the rows the statement has already inserted. Two writers inserting
-- the same symbol and timestamp at the same moment may take the same seq (a tie).
--
-- volume stays as written: NULL unless the writer supplies it. It is not derived from
-- day_volume, because the difference with "the previous row" depends on the order rows
-- arrive in (a backfill, or tickpipe's own ticks of the same symbol, would double count):
-- candles sum the volume of the rows that carry one, and day_volume (the tutorial's column)
-- is the running day volume of the bucket's last row, external rows included.
--
-- Cost for tickpipe's own rows, which always carry seq: the WHEN condition is evaluated per
-- row and the function never runs. But any BEFORE ROW trigger turns off COPY's multi-row
-- buffering (PostgreSQL's and TimescaleDB's); the writer's default INSERT ... unnest path
-- does not use it (docs/external_writers.md has the figures).
--
-- SET search_path FROM CURRENT: the function finds crypto_ticks where setup created it,
-- whatever the writer's search_path.
CREATE FUNCTION tickpipe_external_seq() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
  SELECT coalesce(max(t.seq) + 1, (extract(epoch FROM NEW."time") * 1000000)::bigint)
    INTO NEW.seq
    FROM crypto_ticks AS t
   WHERE t.symbol = NEW.symbol AND t."time" = NEW."time";
  RETURN NEW;
END
$$;

CREATE TRIGGER crypto_ticks_external_seq
BEFORE INSERT ON crypto_ticks
FOR EACH ROW WHEN (NEW.seq IS NULL)
EXECUTE FUNCTION tickpipe_external_seq();
