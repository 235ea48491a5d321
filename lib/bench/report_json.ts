import type { BenchResults } from "./bench.ts";
import { boundBy, finalRssMb, peak, rssAt } from "./figures.ts";
import type { IngestRun } from "./ingest_run.ts";
import type { StageFigures } from "./stage.ts";

const round = (x: number | undefined, digits = 1) =>
  x === undefined || !Number.isFinite(x) ? null : Math.round(x * 10 ** digits) / 10 ** digits;

const ratio = (a: number | undefined, b: number | undefined, digits = 3) =>
  a === undefined || b === undefined ? null : round(a / b, digits);

/** A stage's details; `cpuUsPerTick`: of the process that bounds it (default its worker). */
function stage(
  name: string,
  s: StageFigures | undefined,
  cpuUsPerTick = s?.cpuUsPerTick,
): Record<string, unknown> {
  return {
    [`${name}_verified`]: s?.verified ?? null,
    [`${name}_seconds`]: round(s?.seconds, 3),
    [`${name}_cpu_us_per_tick`]: round(cpuUsPerTick, 2),
    [`${name}_peak_rss_mb`]: round(s?.peakRssMb),
  };
}

function run(name: string, r: IngestRun | undefined): Record<string, unknown> {
  return {
    [`${name}_sim_rate`]: r?.rate ?? null,
    [`${name}_ticks`]: r?.ticks ?? null,
    [`${name}_ticks_per_s`]: round(r?.ticksPerS, 0),
    [`${name}_p50_ms`]: round(r?.commit.p50Ms),
    [`${name}_p99_ms`]: round(r?.commit.p99Ms),
    [`${name}_max_ms`]: round(r?.commit.maxMs),
    [`${name}_cpu_us_per_tick`]: round(r?.cpuUsPerTick, 2),
    [`${name}_peak_rss_mb`]: round(r?.peakRssMb),
    [`${name}_final_rss_mb`]: round(r && finalRssMb(r)),
    [`${name}_verified`]: r?.verified ?? null,
  };
}

/** The JSON report: the figures first, then the details of each measurement. */
export function toJson(r: BenchResults): Record<string, unknown> {
  const { e2e, copy, insert100, low } = r;
  const bound = boundBy(r);
  const rss = rssAt(e2e);
  return {
    e2e_ticks_per_s: round(e2e.ticksPerS, 0),
    sim_ticks_per_s: round(r.sim?.ticksPerS, 0),
    parse_ticks_per_s: round(r.parse?.ticksPerS, 0),
    db_ticks_per_s: round(r.db?.ticksPerS, 0),
    copy_ticks_per_s: round(copy?.ticksPerS, 0),
    e2e_bound_by: bound?.stage ?? null,
    e2e_vs_bound: ratio(e2e.ticksPerS, bound?.ticksPerS),
    e2e_vs_copy: ratio(e2e.ticksPerS, copy?.ticksPerS),
    insert100_ticks_per_s: round(insert100?.ticksPerS, 0),
    e2e_vs_insert100: ratio(e2e.ticksPerS, insert100?.ticksPerS, 2),
    cpu_us_per_tick: round(e2e.cpuUsPerTick, 2),
    ingester_busy: ratio(e2e.cpu.ingester, e2e.seconds, 2),
    peak_rss_mb: round(e2e.peakRssMb),
    steady_rss_mb: round(r.steady && finalRssMb(r.steady)),
    half_rate_p99_ms: round(r.halfRate?.commit.p99Ms),
    p50_ms: round(e2e.commit.p50Ms),
    p99_ms: round(e2e.commit.p99Ms),
    max_ms: round(e2e.commit.maxMs),
    low_rate_p50_ms: round(low?.queryable?.p50Ms),
    low_rate_p99_ms: round(low?.queryable?.p99Ms),
    low_rate_max_ms: round(low?.queryable?.maxMs),
    low_rate_commit_p50_ms: round(low?.commit.p50Ms),
    low_rate_commit_p99_ms: round(low?.commit.p99Ms),
    low_rate_poll_period_ms: round(low?.queryable?.pollPeriodMs, 2),
    low_rate_ticks: low?.ticks ?? null,
    low_rate_verified: low?.verified ?? null,
    flush_interval_ms: r.options.pipeline.maxWaitMs,
    batch_size: r.options.pipeline.maxBatch,
    write_method: r.options.pipeline.method ?? "default",
    ticks: e2e.ticks,
    symbols: r.options.symbols,
    simulator_rate: r.options.rate,
    rows_verified: e2e.verified,
    rows_in_table: e2e.rowsInTable,
    simulator_sent: e2e.simulatorSent,
    duplicates: e2e.duplicates,
    dropped: e2e.dropped,
    e2e_seconds: round(e2e.seconds, 3),
    e2e_ticks_per_s_from_first_receipt: round(e2e.ticksPerSFromReceipt, 0),
    batches: e2e.batches,
    spooled_at_end: e2e.spooled,
    // The sim stage's worker only counts frames: the CPU that matters is the simulator's.
    ...stage("sim", r.sim, r.sim?.simulatorCpuUsPerTick),
    ...stage("parse", r.parse),
    ...stage("db", r.db),
    db_rows_in_table: r.db?.rowsInTable ?? null,
    db_duplicates: r.db?.duplicates ?? null,
    ...run("half_rate", r.halfRate),
    ...run("steady", r.steady),
    steady_seconds: r.steady ? r.options.steadySeconds : null,
    rss_mb_at: {
      "25%": round(rss.q25),
      "50%": round(rss.q50),
      "75%": round(rss.q75),
      "100%": round(rss.q100),
    },
    rss_samples_mb: e2e.samples.map((s) => round(s.rssMb)),
    heap_samples_mb: e2e.samples.map((s) => round(s.heapMb)),
    heap_total_samples_mb: e2e.samples.map((s) => round(s.heapTotalMb)),
    rss_before_ingest_mb: round(e2e.samples[0]!.rssMb),
    peak_heap_used_mb: round(peak(e2e, "heapMb")),
    peak_external_mb: round(peak(e2e, "externalMb")),
    cpu_seconds: {
      ingester: round(e2e.cpu.ingester, 2),
      simulator: round(e2e.cpu.simulator, 2),
      postgres: round(e2e.cpu.postgres, 2),
    },
    bench_hook_ms: round(e2e.hookMs, 2),
    copy_rows: copy?.rows ?? null,
    copy_seconds: round(copy?.seconds, 3),
    copy_verified: copy?.verified ?? null,
    insert100_rows: insert100?.rows ?? null,
    insert100_seconds: round(insert100?.seconds, 3),
    insert100_verified: insert100?.verified ?? null,
    machine: { ...r.machine, loadAfter: r.loadAfter ?? null },
  };
}
