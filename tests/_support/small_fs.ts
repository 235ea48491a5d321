/**
 * Genuinely full or read-only filesystems for the spool's fault tests: a tmpfs mounted on a
 * directory (root on Linux). Where mounting is not possible the caller falls back to what it
 * can do, and says which ran.
 */

async function run(command: string, args: string[]): Promise<string | undefined> {
  try {
    const out = await new Deno.Command(command, { args, stdout: "null", stderr: "piped" })
      .output();
    return out.code === 0 ? undefined : new TextDecoder().decode(out.stderr).trim();
  } catch (error) {
    return (error as Error).message;
  }
}

/** A mounted tmpfs; `unmount` removes it (the directory stays). */
export interface Tmpfs {
  dir: string;
  unmount(): Promise<void>;
}

/**
 * Mounts a tmpfs of `size` (e.g. "192k") on `dir`, read-only with `readOnly`; the reason
 * when it cannot (not root, no mount(8), a container without CAP_SYS_ADMIN).
 */
export async function mountTmpfs(
  dir: string,
  size: string,
  options: { readOnly?: boolean } = {},
): Promise<Tmpfs | string> {
  if (Deno.build.os !== "linux") return `${Deno.build.os} has no tmpfs`;
  const flags = `size=${size},mode=0777${options.readOnly ? ",ro" : ""}`;
  const failed = await run("mount", ["-t", "tmpfs", "-o", flags, "tmpfs", dir]);
  if (failed !== undefined) return `cannot mount a tmpfs (${failed})`;
  return {
    dir,
    async unmount() {
      const error = await run("umount", [dir]);
      if (error !== undefined) await run("umount", ["-l", dir]);
    },
  };
}

/** True when this process can write where permissions say it cannot (root). */
export function bypassesPermissions(): boolean {
  return Deno.uid() === 0;
}
