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

/**
 * The Deno flags `deno task <name>` runs with, read from deno.json, so a subprocess under
 * test gets exactly the permissions its task grants (and no more).
 */
export function taskPermissions(name: string): string[] {
  const config = JSON.parse(Deno.readTextFileSync("deno.json")) as {
    tasks: Record<string, string>;
  };
  const command = config.tasks[name];
  if (!command) throw new TypeError(`deno.json has no task "${name}"`);
  return command.split(/\s+/).filter((word) => word.startsWith("--"));
}

/** A fresh data directory under .data/, where the tasks' permissions let them write. */
export async function taskDataDir(prefix: string): Promise<string> {
  await Deno.mkdir(".data", { recursive: true });
  return await Deno.makeTempDir({ dir: ".data", prefix });
}
