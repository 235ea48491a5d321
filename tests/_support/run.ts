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
