import { basename, join } from "node:path";
import { type Logger, silentLogger } from "../log.ts";
import { FIRST_SEGMENT, SEGMENT_RE, segmentName } from "./spool_format.ts";
import { Spool, type SpoolOptions } from "./spool.ts";
import { syncDirSync } from "./files.ts";

/**
 * One process's part of a data directory's spool: `<root>/<n>/`, held through an exclusive
 * lock (flock) on `<root>/<n>/lock` for as long as the process runs. The kernel releases
 * it when the process dies, however it dies, so a slot whose lock is free belongs to no one.
 */
export interface SpoolSlot {
  dir: string;
  index: number;
  /** Holds the lock; closing it releases the slot. */
  lock: Deno.FsFile;
}

const MAX_SLOTS = 64;
const SLOT_RE = /^\d+$/;

/** Opens `<dir>/lock` and takes its lock if it is free; undefined when another holds it. */
async function tryLock(dir: string): Promise<Deno.FsFile | undefined> {
  const lock = await Deno.open(join(dir, "lock"), { read: true, write: true, create: true });
  try {
    if (await lock.tryLock(true)) return lock;
  } catch (error) {
    lock.close();
    throw error;
  }
  lock.close();
  return undefined;
}

/**
 * Takes the first free slot under `root` (creating it), so several processes can share a
 * data directory without ever touching each other's spool. Throws when the directory cannot
 * be written or all `maxSlots` (default 64) are held.
 */
export async function acquireSlot(
  root: string,
  options: { maxSlots?: number } = {},
): Promise<SpoolSlot> {
  const maxSlots = options.maxSlots ?? MAX_SLOTS;
  for (let index = 0; index < maxSlots; index++) {
    const dir = join(root, String(index));
    await Deno.mkdir(dir, { recursive: true });
    const lock = await tryLock(dir);
    if (lock) return { dir, index, lock };
  }
  throw new Error(`all ${maxSlots} spool slots under ${root} are held by running processes`);
}

async function segmentsIn(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isFile && SEGMENT_RE.test(entry.name)) names.push(entry.name);
  }
  return names.sort();
}

/** Settings of `forEachOrphan`. */
interface OrphanOptions {
  /** Include the segments of the layout before slots (`<root>/seg-*.tsv`; at start only). */
  legacy?: boolean;
  /** Called with each orphaned slot, locked: false leaves it alone (for now). */
  accept?: (dir: string) => boolean;
}

/**
 * Calls `take` with the segments nobody owns: those of every slot under `root` but
 * `ownIndex` whose lock is free (a process that died, or stopped with ticks it could not
 * write) and, with `legacy`, those of the layout before slots. Each slot is locked while
 * `take` runs, so two processes cannot both take it. Returns the segments taken.
 */
async function forEachOrphan(
  root: string,
  ownIndex: number,
  take: (from: string, names: string[]) => Promise<void>,
  options: OrphanOptions = {},
): Promise<number> {
  let taken = 0;
  if (options.legacy) {
    const names = await segmentsIn(root);
    if (names.length > 0) await take(root, names);
    taken += names.length;
  }
  for await (const entry of Deno.readDir(root)) {
    if (!entry.isDirectory || !SLOT_RE.test(entry.name) || entry.name === String(ownIndex)) {
      continue;
    }
    const dir = join(root, entry.name);
    if ((await segmentsIn(dir)).length === 0) continue;
    const lock = await tryLock(dir);
    if (!lock) continue;
    try {
      if (options.accept && !options.accept(dir)) continue;
      // Listed again under the lock: its owner may have drained some before it stopped.
      const names = await segmentsIn(dir);
      if (names.length > 0) await take(dir, names);
      taken += names.length;
    } finally {
      lock.close();
    }
  }
  return taken;
}

/**
 * At start, before the slot's spool is opened: moves into `slot` the segments nobody owns
 * (see `forEachOrphan`; the layout before slots included), after the slot's own, in their
 * order. Moving is a rename: atomic, nothing copied. Returns the number of segments moved.
 */
export async function adoptOrphans(
  root: string,
  slot: SpoolSlot,
  options: { logger?: Logger } = {},
): Promise<number> {
  const logger = options.logger ?? silentLogger;
  const own = await segmentsIn(slot.dir);
  let next = own.length > 0 ? Number(SEGMENT_RE.exec(own.at(-1)!)![1]) + 1 : FIRST_SEGMENT;
  return await forEachOrphan(root, slot.index, async (from, names) => {
    for (const name of names) {
      await Deno.rename(join(from, name), join(slot.dir, segmentName(next++)));
    }
    for (const dir of [from, slot.dir]) syncDirSync(dir);
    logger.info(`Adopted ${names.length} spool segment(s) left in ${from}`, { into: slot.dir });
  }, { legacy: true });
}

/**
 * While running: hands to `spool` (a slot under `root`) the segments of the slots nobody
 * holds (see `Spool.adopt`), those `accept` agrees to. Returns the rows adopted.
 */
export async function adoptOrphansInto(
  root: string,
  spool: Spool,
  options: Pick<OrphanOptions, "accept"> = {},
): Promise<number> {
  let rows = 0;
  await forEachOrphan(root, Number(basename(spool.dir)), async (from, names) => {
    rows += await spool.adopt(from, names);
  }, options);
  return rows;
}

/**
 * Opens this process's spool under `root`: takes a free slot, adopts the segments nobody
 * owns, and opens the slot's spool, which holds the slot's lock until it is closed.
 */
export async function openSlotSpool(
  root: string,
  options: Omit<SpoolOptions, "lock"> = {},
): Promise<Spool> {
  const slot = await acquireSlot(root);
  try {
    await adoptOrphans(root, slot, { logger: options.logger });
    return await Spool.open(slot.dir, { ...options, lock: slot.lock });
  } catch (error) {
    slot.lock.close();
    throw error;
  }
}
