/**
 * One measurement of `deno task bench` in a process of its own, started by the bench (not
 * a command): reads the job as JSON on stdin, prints the result as one JSON line on stdout,
 * logs on stderr. The bench starts it with the ingest task's permissions and V8 flags, so
 * its CPU and memory are those of a real ingester (lib/bench/worker_process.ts).
 */
import { exitWhenDone, runMain } from "../lib/cli.ts";
import { Logger } from "../lib/log.ts";
import { parseJob, runJob } from "../lib/bench/worker.ts";

/** Reads a job on stdin, runs it, prints the result. */
export function run(_args: string[]): Promise<number> {
  return runMain(async () => {
    const job = parseJob(await new Response(Deno.stdin.readable).text());
    const result = await runJob(job, new Logger({ level: job.logLevel }));
    console.log(JSON.stringify(result));
    return 0;
  });
}

if (import.meta.main) exitWhenDone(await run(Deno.args));
