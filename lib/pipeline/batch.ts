import type { Row } from "./sequencer.ts";

/** A group of rows written in one transaction under one id (`tickpipe_batches.batch_id`). */
export interface Batch {
  id: string;
  rows: Row[];
  /** True when read back from the on-disk spool. */
  spooled: boolean;
}

/** A new batch with a fresh id. */
export function newBatch(rows: Row[], spooled = false): Batch {
  return { id: crypto.randomUUID(), rows, spooled };
}
