import { join } from "node:path";
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

/**
 * Moves into `slot` the segments nobody owns: those of slots whose lock is free (a process
 * that died or stopped with ticks it could not write) and those of the layout before slots
 * (`<root>/seg-*.tsv`), after the slot's own, in their order. Each foreign slot is locked
 * while its files move (rename: atomic, nothing copied), so two processes starting at once
 * cannot both adopt it. Returns the number of segments moved.
 */
export async function adoptOrphans(
  root: string,
  slot: SpoolSlot,
  options: { logger?: Logger } = {},
): Promise<number> {
  const logger = options.logger ?? silentLogger;
  const own = await segmentsIn(slot.dir);
  let next = own.length > 0 ? Number(SEGMENT_RE.exec(own.at(-1)!)![1]) + 1 : FIRST_SEGMENT;
  let moved = 0;
  const move = async (from: string, names: string[]) => {
    for (const name of names) {
      await Deno.rename(join(from, name), join(slot.dir, segmentName(next++)));
      moved++;
    }
    if (names.length > 0) {
      for (const dir of [from, slot.dir]) syncDirSync(dir);
      logger.info(`Adopted ${names.length} spool segment(s) left in ${from}`, { into: slot.dir });
    }
  };
  await move(root, await segmentsIn(root));
  for await (const entry of Deno.readDir(root)) {
    if (!entry.isDirectory || !SLOT_RE.test(entry.name) || entry.name === String(slot.index)) {
      continue;
    }
    const dir = join(root, entry.name);
    const names = await segmentsIn(dir);
    if (names.length === 0) continue;
    const lock = await tryLock(dir);
    if (!lock) continue;
    try {
      // Listed again under the lock: its owner may have drained some before it stopped.
      await move(dir, await segmentsIn(dir));
    } finally {
      lock.close();
    }
  }
  return moved;
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
