import { exitWhenDone, parseFlags, runMain } from "../lib/cli.ts";
import { UserError } from "../lib/errors.ts";
import { ENV_VARS } from "../lib/config.ts";

const USAGE = `Usage: tickpipe compile [--output tickpipe] [--target TRIPLE]

Builds one self-contained binary of main.ts with the permissions the commands need.`;

/** The permissions a compiled tickpipe runs with: the union of what its commands need. */
export const COMPILE_PERMISSIONS = [
  `--allow-env=${ENV_VARS.join(",")}`,
  "--ignore-env",
  "--allow-net",
  "--allow-read",
  "--allow-write=.data,/var/lib/tickpipe",
  "--allow-run",
  "--allow-sys",
  // The ingester's memory bound (see README, Benchmark): a small young generation and a
  // capped old space keep its RSS flat under 200 MB.
  "--v8-flags=--max-semi-space-size=4,--max-old-space-size=192,--single-threaded-gc",
];

/** `deno task compile`: `deno compile` with a clear explanation when the runtime cannot be fetched. */
export function run(args: string[]): Promise<number> {
  return runMain(async () => {
    const { values } = parseFlags(args, {
      output: { type: "string", default: "tickpipe" },
      target: { type: "string" },
    }, USAGE);
    const compileArgs = [
      "compile",
      ...COMPILE_PERMISSIONS,
      "--output",
      values.output,
      ...(values.target ? ["--target", values.target] : []),
      "main.ts",
    ];
    const result = await new Deno.Command(Deno.execPath(), {
      args: compileArgs,
      stdout: "inherit",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(result.stderr);
    if (result.code === 0) {
      console.log(`Built ./${values.output} (run ./${values.output} --help)`);
      return 0;
    }
    if (/dl\.deno\.land|denort|error sending request|dns error/i.test(stderr)) {
      throw new UserError(
        "Cannot compile: deno compile downloads its runtime (denort) from dl.deno.land, which this " +
          "network cannot reach. Run `deno task compile` where that host is reachable, or point " +
          "DENORT_BIN at a denort binary of the same Deno version",
      );
    }
    throw new UserError(`deno compile failed: ${stderr.trim().split("\n").slice(0, 3).join(" ")}`);
  });
}

if (import.meta.main) exitWhenDone(await run(Deno.args));
