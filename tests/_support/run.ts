/** Runs `deno run <permissions> <script> <args>` as a subprocess and collects its output. */
export async function runDeno(
  script: string,
  args: string[] = [],
  options: { env?: Record<string, string>; permissions?: string[]; cwd?: string } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const result = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...(options.permissions ?? ["--allow-all"]), script, ...args],
    env: { NO_COLOR: "1", ...options.env },
    cwd: options.cwd,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: result.code,
    stdout: decoder.decode(result.stdout),
    stderr: decoder.decode(result.stderr),
  };
}

/** A TCP port that was free a moment ago. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** A permission set of deno.json (`"permissions"`): what each task runs with. */
export type PermissionSet = "db" | "client" | "simulator";

/**
 * The Deno flags of permission set `name`, so a subprocess under test gets exactly what
 * its task grants (and no more): `-P=name`, and `-q` for the experimental-feature warning.
 */
export function permissionSet(name: PermissionSet): string[] {
  return ["-q", `-P=${name}`];
}

/** A fresh data directory under .data/, where the tasks' permissions let them write. */
export async function taskDataDir(prefix: string): Promise<string> {
  await Deno.mkdir(".data", { recursive: true });
  return await Deno.makeTempDir({ dir: ".data", prefix });
}
