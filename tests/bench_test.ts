/**
 * The bench task end to end with tiny numbers, under the permissions `deno task bench`
 * grants: every JSON field is there and sane, the rows verify. No timing target is
 * asserted: a benchmark is a task that prints figures, not a test that fails on a time.
 */
import assert from "node:assert/strict";
import { createTestDatabase } from "./_support/db.ts";
import { permissionSet, runDeno } from "./_support/run.ts";
import { databaseUrl } from "./_support/url.ts";

const BENCH_PERMISSIONS = permissionSet("db");

Deno.test("Bench prints one JSON object with every figure, and its rows verify", async () => {
  // Only for the server's address: the bench makes (and drops) databases of its own there.
  const db = await createTestDatabase({ migrate: false });
  try {
    const result = await runDeno("tasks/bench.ts", [
      "--ticks",
      "5000",
      "--symbols",
      "5",
      "--tutorial-ticks",
      "1000",
      "--low-rate-seconds",
      "2",
      "--json",
      "--log-level",
      "warn",
    ], {
      permissions: BENCH_PERMISSIONS,
      env: { DATABASE_URL: databaseUrl(db.config) },
    });
    assert.equal(result.code, 0, result.stderr);
    const lines = result.stdout.trim().split("\n");
    assert.equal(lines.length, 1, "stdout is one JSON object");
    const report = JSON.parse(lines[0]!);

    for (
      const field of [
        "e2e_ticks_per_s",
        "copy_ticks_per_s",
        "e2e_vs_copy",
        "tutorial_ticks_per_s",
        "e2e_vs_tutorial",
        "p50_ms",
        "p99_ms",
        "max_ms",
        "peak_rss_mb",
        "low_rate_p50_ms",
        "low_rate_p99_ms",
        "flush_interval_ms",
      ]
    ) {
      assert.equal(typeof report[field], "number", `${field} is a number`);
      assert.ok(report[field] > 0, `${field} > 0, got ${report[field]}`);
    }
    assert.ok(report.p50_ms <= report.p99_ms && report.p99_ms <= report.max_ms);
    assert.ok(report.low_rate_p50_ms <= report.low_rate_p99_ms);

    assert.equal(report.ticks, 5000);
    assert.equal(report.rows_verified, true);
    assert.equal(report.rows_in_table, 5000);
    assert.equal(report.simulator_sent, 5000);
    assert.equal(report.dropped, 0);
    assert.equal(report.copy_rows, 5000);
    assert.equal(report.copy_verified, true);
    assert.equal(report.tutorial_rows, 1000);
    assert.equal(report.tutorial_verified, true);
    assert.equal(report.low_rate_ticks, 40);
    assert.equal(report.low_rate_verified, true);

    assert.ok(Array.isArray(report.rss_samples_mb) && report.rss_samples_mb.length > 0);
    for (const q of ["25%", "50%", "75%", "100%"]) assert.ok(report.rss_mb_at[q] > 0);
    assert.equal(typeof report.machine.cores, "number");
    assert.match(report.machine.postgres, /^\d+/);
    assert.equal(report.machine.deno, Deno.version.deno);

    // Every scratch database was dropped.
    const left = await db.sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM pg_database WHERE datname LIKE 'bench\\_%'`;
    assert.equal(left[0]!.n, 0);
  } finally {
    await db.drop();
  }
});
