/**
 * A task whose body fails where no `catch` can see it, to test `runMain`'s last resort:
 * `throw` (an exception from a timer), `reject` (a rejection nobody handles), or
 * `postgres` (postgres.js 3.4.9 writing to a reserved connection whose backend was
 * terminated, porsager/postgres#1208; needs DATABASE_URL). Every variant leaves a timer
 * pending, so the process ends only if the handler ends it.
 */
import postgres from "postgres";
import { runMain } from "../../lib/cli.ts";
import { registerSecret } from "../../lib/redact.ts";

/** Registered as a secret: it must never be printed. */
export const UNCAUGHT_SECRET = "uncaught-secret-8d1f";

async function body(kind: string): Promise<number> {
  registerSecret(UNCAUGHT_SECRET);
  setTimeout(() => {}, 60_000);
  if (kind === "throw") {
    setTimeout(() => {
      throw new Error(`boom near ${UNCAUGHT_SECRET}`);
    }, 10);
  } else if (kind === "reject") {
    Promise.reject(new Error(`rejected near ${UNCAUGHT_SECRET}`));
  } else if (kind === "postgres") {
    const url = Deno.env.get("DATABASE_URL")!;
    const sql = postgres(url, { max: 2, onnotice: () => {} });
    const killer = postgres(url, { max: 1, onnotice: () => {} });
    const reserved = await sql.reserve();
    const [row] = await reserved<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`;
    await killer`SELECT pg_terminate_backend(${row!.pid})`;
    await reserved`SELECT 1`.catch(() => {});
    // Once the socket has closed (not before: then the query is written to it and hangs).
    await new Promise((resolve) => setTimeout(resolve, 200));
    await reserved`SELECT 1`;
  }
  await new Promise(() => {}); // never settles: only the last resort ends this task
  return 0;
}

if (import.meta.main) Deno.exitCode = await runMain(() => body(Deno.args[0] ?? "throw"));
