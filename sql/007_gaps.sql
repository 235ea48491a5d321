-- The gap log: every interval in which a symbol's ticks may be missing, why, and whether
-- it has been filled from Twelve Data's REST bars. Same in both schema modes.
--
-- Ingest runs record themselves and a heartbeat, so that a run that ended without a clean
-- stop (a crash, a kill -9, a lost machine) is found by the next start (or by `gaps` and
-- `backfill`): its heartbeat is stale, or its process is gone from the same host.
CREATE TABLE IF NOT EXISTS tickpipe_runs (
  run_id UUID PRIMARY KEY,
  host TEXT NOT NULL,
  pid INTEGER NOT NULL,
  symbols TEXT[] NOT NULL,
  -- How often this run writes heartbeat_at; it counts as stopped after three silent beats.
  heartbeat_ms INTEGER NOT NULL,
  started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  -- NULL while it runs (or until its crash is found).
  stopped_at TIMESTAMPTZ,
  stop_kind TEXT CHECK (stop_kind IN ('clean', 'crashed'))
);

CREATE INDEX IF NOT EXISTS tickpipe_runs_running_idx ON tickpipe_runs (started_at)
  WHERE stopped_at IS NULL;

-- reason:
--   disconnected  the WebSocket dropped: from the last tick before to the first after the resubscribe
--   stalled       the watchdog found the socket silent and reconnected
--   refused       the server refused the symbol at subscribe
--   not_running   ingest was stopped (clean: recorded at the stop; a crash: found at the next start)
--   dropped       the pipeline dropped ticks (memory and spool both full)
--   handover      another writer took the symbol over (per-symbol leases)
--   history       history loaded on purpose (`backfill --symbols ... --days N`)
-- gap_start is the last tick stored before the gap (or the instant it began), gap_end the
-- first tick after it; NULL while the gap goes on (at most one such gap per symbol).
-- state: open (not yet filled), filled (every whole minute without ticks was asked for;
-- bars = minutes stored from REST bars), unfillable (detail says why). filled_to is the
-- fill's progress: minutes before it are done, so an interrupted backfill resumes there.
CREATE TABLE IF NOT EXISTS tickpipe_gaps (
  gap_id BIGSERIAL PRIMARY KEY,
  symbol TEXT NOT NULL,
  reason TEXT NOT NULL CHECK (reason IN (
    'disconnected', 'stalled', 'refused', 'not_running', 'dropped', 'handover', 'history')),
  gap_start TIMESTAMPTZ NOT NULL,
  gap_end TIMESTAMPTZ,
  state TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'filled', 'unfillable')),
  filled_to TIMESTAMPTZ,
  bars INTEGER NOT NULL DEFAULT 0,
  detail TEXT,
  run_id UUID,
  recorded_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  CHECK (gap_end IS NULL OR gap_end >= gap_start)
);

CREATE INDEX IF NOT EXISTS tickpipe_gaps_symbol_start_idx ON tickpipe_gaps (symbol, gap_start);
CREATE INDEX IF NOT EXISTS tickpipe_gaps_open_idx ON tickpipe_gaps (gap_start)
  WHERE state = 'open';
CREATE UNIQUE INDEX IF NOT EXISTS tickpipe_gaps_ongoing_idx ON tickpipe_gaps (symbol)
  WHERE gap_end IS NULL;
