/**
 * The bench task end to end with small numbers, under the permissions `deno task bench`
 * grants: every JSON field is there and sane, every measurement's rows verify. No timing
 * target is asserted: a benchmark is a task that prints figures, not a test that fails on
 * a time.
 */
import assert from "node:assert/strict";
import { createTestDatabase } from "./_support/db.ts";
import { permissionSet, runDeno } from "./_support/run.ts";
import { databaseUrl } from "./_support/url.ts";

const BENCH_PERMISSIONS = permissionSet("db");

/** The figures of issue #13 and the latency figures: positive numbers in every run. */
const FIGURES = [
  "e2e_ticks_per_s",
  "sim_ticks_per_s",
  "parse_ticks_per_s",
  "db_ticks_per_s",
  "copy_ticks_per_s",
  "e2e_vs_bound",
  "e2e_vs_copy",
  "insert100_ticks_per_s",
  "e2e_vs_insert100",
  "cpu_us_per_tick",
  "ingester_busy",
  "peak_rss_mb",
  "steady_rss_mb",
  "half_rate_p99_ms",
  "p50_ms",
  "p99_ms",
  "max_ms",
  "low_rate_p50_ms",
  "low_rate_p99_ms",
  "flush_interval_ms",
  "sim_cpu_us_per_tick",
  "parse_cpu_us_per_tick",
  "db_cpu_us_per_tick",
  "half_rate_ticks_per_s",
  "steady_ticks_per_s",
];

Deno.test("Bench prints one JSON object with every figure, and every measurement verifies", async () => {
  // Only for the server's address: the bench makes (and drops) databases of its own there.
  const db = await createTestDatabase({ migrate: false });
  try {
    const result = await runDeno("tasks/bench.ts", [
      "--ticks",
      "20000",
      "--symbols",
      "5",
      "--insert100-ticks",
      "1000",
      "--half-rate-seconds",
      "1",
      "--steady-seconds",
      "2",
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

    for (const field of FIGURES) {
      assert.equal(typeof report[field], "number", `${field} is a number`);
      assert.ok(report[field] > 0, `${field} > 0, got ${report[field]}`);
    }
    assert.ok(["sim", "parse", "db", "copy"].includes(report.e2e_bound_by));
    assert.ok(report.p50_ms <= report.p99_ms && report.p99_ms <= report.max_ms);
    assert.ok(report.low_rate_p50_ms <= report.low_rate_p99_ms);
    assert.ok(report.half_rate_p50_ms <= report.half_rate_p99_ms);
    // The 100-row INSERT figure is what it is, not "the tutorial".
    assert.ok(Object.keys(report).every((key) => !key.includes("tutorial")));

    assert.equal(report.ticks, 20000);
    for (const verified of ["rows", "sim", "parse", "db", "copy", "insert100", "half_rate"]) {
      assert.equal(report[`${verified}_verified`], true, `${verified}_verified`);
    }
    assert.equal(report.steady_verified, true);
    assert.equal(report.low_rate_verified, true);
    assert.equal(report.rows_in_table, 20000);
    assert.equal(report.simulator_sent, 20000);
    assert.equal(report.duplicates, 0);
    assert.equal(report.dropped, 0);
    assert.equal(report.db_rows_in_table, 20000);
    assert.equal(report.db_duplicates, 0);
    assert.equal(report.copy_rows, 20000);
    assert.equal(report.insert100_rows, 1000);
    // Half the end-to-end rate (which the report rounds).
    assert.ok(Math.abs(report.half_rate_sim_rate - report.e2e_ticks_per_s / 2) <= 1);
    assert.equal(report.steady_ticks, 2000);
    assert.equal(report.low_rate_ticks, 40);

    assert.ok(Array.isArray(report.rss_samples_mb) && report.rss_samples_mb.length > 0);
    for (const q of ["25%", "50%", "75%", "100%"]) assert.ok(report.rss_mb_at[q] > 0);
    assert.ok(report.cpu_seconds.ingester > 0);
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
