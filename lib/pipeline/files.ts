/** Writes all of `data` (write(2) may take less than asked). */
export function writeAllSync(file: Deno.FsFile, data: Uint8Array): void {
  let offset = 0;
  while (offset < data.length) offset += file.writeSync(data.subarray(offset));
}

/** Removes a file, ignoring failure (gone already, or a read-only directory). */
export function removeQuietly(path: string): void {
  try {
    Deno.removeSync(path);
  } catch {
    // An empty segment left behind is skipped when read.
  }
}

/** fsyncs a directory, so files created or renamed in it survive a power loss. */
export function syncDirSync(dir: string): void {
  const file = Deno.openSync(dir, { read: true });
  try {
    file.syncSync();
  } finally {
    file.close();
  }
}

/** As `syncDirSync`, without blocking. */
export async function syncDir(dir: string): Promise<void> {
  const file = await Deno.open(dir, { read: true });
  try {
    await file.syncData();
  } finally {
    file.close();
  }
}

/** Closes a file, ignoring failure (closed already). */
export function closeQuietly(file: Deno.FsFile): void {
  try {
    file.close();
  } catch {
    // Closed already.
  }
}
