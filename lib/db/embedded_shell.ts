/**
 * The commands and file checks the embedded server's setup runs: `run` (optionally as
 * another user), `symlink` through `ln`, `exists`, `ensureDir`.
 */

/** Runs `cmd` (as `asUser` through runuser when given) in the C locale; never throws on exit. */
export async function run(
  cmd: string,
  args: string[],
  options: { asUser?: string | undefined; env?: Record<string, string> } = {},
): Promise<{ code: number; output: string }> {
  const [command, argv] = options.asUser
    ? ["runuser", ["-u", options.asUser, "--", cmd, ...args]]
    : [cmd, args];
  const result = await new Deno.Command(command, {
    args: argv,
    stdout: "piped",
    stderr: "piped",
    env: { LC_ALL: "C", LC_MESSAGES: "C", ...options.env },
  }).output();
  const decoder = new TextDecoder();
  return {
    code: result.code,
    output: (decoder.decode(result.stdout) + decoder.decode(result.stderr)).trim(),
  };
}

/**
 * Creates a symlink with `ln`: Deno.symlink needs unscoped read and write
 * permissions, which the tasks do not grant.
 */
export async function symlink(target: string, path: string): Promise<void> {
  const result = await run("ln", ["-sfn", target, path]);
  if (result.code !== 0) throw new Error(`ln -s ${target} ${path}: ${result.output}`);
}

/** True when `path` exists (following symlinks). */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Creates `path` and its parents when missing; returns it. */
export async function ensureDir(path: string): Promise<string> {
  await Deno.mkdir(path, { recursive: true });
  return path;
}

/** The last line of a command's output: where PostgreSQL's tools put the reason. */
export function lastLine(text: string): string {
  return text.trim().split("\n").pop() ?? text;
}
