-- Exactly-once writes: each batch records its id in the same transaction as its rows,
-- so a retry after a COMMIT whose outcome was lost can tell whether it landed.
CREATE TABLE IF NOT EXISTS tickpipe_batches (
  batch_id UUID PRIMARY KEY,
  rows INTEGER NOT NULL,
  committed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS tickpipe_batches_committed_at_idx ON tickpipe_batches (committed_at);
