-- Rows the database refused for a data reason (a CHECK constraint, a value out of range, an
-- encoding error), set aside one by one while the rest of their batch is written.
-- `batch_id` is the id of the row's one-row batch, derived from its original batch, so a
-- batch refused twice (a spool chunk drained again) quarantines each row once; replaying a
-- row records that id in tickpipe_batches with the row, so it is stored exactly once.
-- Types are the widest the ticks can take, so the quarantine accepts what crypto_ticks
-- refused. `deno task quarantine` lists, replays and discards them.
CREATE TABLE IF NOT EXISTS tickpipe_quarantine (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  batch_id UUID NOT NULL UNIQUE,
  "time" TIMESTAMPTZ NOT NULL,
  symbol TEXT NOT NULL,
  price DOUBLE PRECISION,
  day_volume NUMERIC,
  bid DOUBLE PRECISION,
  ask DOUBLE PRECISION,
  volume NUMERIC,
  seq BIGINT NOT NULL,
  -- The refusal: SQLSTATE (NULL for batches set aside whole by earlier versions), condition
  -- name and constraint ("check_violation no_doge"), the server's message and detail.
  sqlstate TEXT,
  reason TEXT NOT NULL,
  constraint_name TEXT,
  message TEXT NOT NULL,
  detail TEXT,
  quarantined_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  -- Replays that were refused again (the row stays, with the latest refusal).
  attempts INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX IF NOT EXISTS tickpipe_quarantine_reason_idx ON tickpipe_quarantine (reason);
