-- One writer per symbol (docs/one_writer.md). The lease itself is a session-level advisory
-- lock on (1952801643, lock_key), held by the owner's lease connection for as long as that
-- session lives; these tables say who holds it, since when, and whether it is alive.

-- One row per running ingest process, renewed every second or so by its lease session.
CREATE TABLE IF NOT EXISTS tickpipe_lease_holders (
  holder UUID PRIMARY KEY,
  host TEXT NOT NULL,
  pid INTEGER NOT NULL,
  started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  renewed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One row per symbol ever ingested; written when the lease changes hands, not on renewal.
CREATE TABLE IF NOT EXISTS tickpipe_leases (
  symbol TEXT PRIMARY KEY,
  lock_key INTEGER GENERATED ALWAYS AS IDENTITY UNIQUE,
  -- The process holding the lease; NULL once it released it on a clean stop.
  holder UUID,
  host TEXT,
  pid INTEGER,
  since TIMESTAMPTZ,
  released_at TIMESTAMPTZ
);

-- Changes of owner, so a backfill can fill what they cost:
--   'takeover' (the previous owner's session ended without releasing) and 'handover' (it had
--   released): ticks from start_at (the last tick stored before) to end_at (the new owner
--   subscribed) were ingested by nobody;
--   'overlap': a cut-off owner kept ingesting from start_at (another process took the lease)
--   to end_at (it learnt so): rows of that interval may be stored twice.
CREATE TABLE IF NOT EXISTS tickpipe_handovers (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  symbol TEXT NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('takeover', 'handover', 'overlap')),
  from_holder TEXT,
  to_holder TEXT NOT NULL,
  start_at TIMESTAMPTZ,
  end_at TIMESTAMPTZ NOT NULL,
  recorded_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS tickpipe_handovers_symbol_idx ON tickpipe_handovers (symbol, end_at);
