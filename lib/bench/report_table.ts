import { BATCHER_DEFAULTS } from "../pipeline/batcher.ts";
import type { BenchResults } from "./bench.ts";
import { boundBy, finalRssMb, peak, rssAt, TARGET } from "./figures.ts";
import type { StageFigures } from "./stage.ts";
import { INGEST_V8_FLAGS } from "./subprocess.ts";

const int = (x: number) => Number.isFinite(x) ? Math.round(x).toLocaleString("en-US") : "n/a";
const ms = (x: number) => Number.isFinite(x) ? `${x.toFixed(1)} ms` : "n/a";
const mb = (x: number) => `${x.toFixed(0)} MB`;
const us = (x: number) => `${x.toFixed(2)} µs`;
const yes = (ok: boolean | undefined) => ok === undefined ? "" : ok ? "ok" : "MISSED";
const load = (x: number | undefined) => x === undefined ? "n/a" : x.toFixed(2);

/** The aligned table: figure, value, target, ok?, after three lines on the setup. */
export function toTable(r: BenchResults): string {
  const { e2e, copy, insert100, low, halfRate, steady, machine: m, options: o } = r;
  const rows: [string, string, string, string][] = [];
  const add = (figure: string, value: string, target = "", ok?: boolean) =>
    rows.push([figure, value, target, yes(ok)]);
  const unverified = (part: { verified: boolean } | undefined) =>
    part && !part.verified ? false : undefined;

  add(
    "rows verified (e2e)",
    `${int(e2e.rowsInTable)} rows = ${int(e2e.simulatorSent)} sent, ${e2e.duplicates} dup.`,
    `= ${int(e2e.ticks)}, 0 dup.`,
    e2e.verified,
  );
  add(
    "end to end",
    `${int(e2e.ticksPerS)} ticks/s`,
    `>= ${int(TARGET.e2eTicksPerS)}`,
    e2e.ticksPerS >= TARGET.e2eTicksPerS,
  );
  add("  first send -> last commit", `${e2e.seconds.toFixed(2)} s`);
  add("  from first receipt", `${int(e2e.ticksPerSFromReceipt)} ticks/s`);

  const stage = (label: string, s: StageFigures | undefined, cpu = s && us(s.cpuUsPerTick)) => {
    if (!s) return;
    add(label, `${int(s.ticksPerS)} ticks/s, ${cpu}/tick`, "", unverified(s));
  };
  const simCpu = r.sim?.simulatorCpuUsPerTick;
  stage(
    "ceiling: simulator -> counting socket",
    r.sim,
    `simulator ${simCpu === undefined ? "n/a" : us(simCpu)}`,
  );
  stage("ceiling: + client parse and checks", r.parse);
  stage("ceiling: pipeline + database, no socket", r.db);
  if (copy) {
    add(
      "ceiling: one COPY (database alone)",
      `${int(copy.ticksPerS)} ticks/s`,
      "",
      unverified(copy),
    );
  }
  const bound = boundBy(r);
  if (bound) {
    add(
      "  e2e bound by",
      `${bound.stage} (e2e = ${(e2e.ticksPerS / bound.ticksPerS * 100).toFixed(0)} % of it)`,
    );
  }
  if (copy) {
    const ratio = e2e.ticksPerS / copy.ticksPerS;
    add(
      "e2e / COPY",
      `${(ratio * 100).toFixed(0)} %`,
      `>= ${TARGET.e2eVsCopy * 100} %`,
      ratio >= TARGET.e2eVsCopy,
    );
  }
  if (insert100) {
    add(
      "100-row INSERT + COMMIT, pre-built rows",
      `${int(insert100.ticksPerS)} ticks/s`,
      `${int(insert100.rows)} rows`,
      unverified(insert100),
    );
  }
  add(
    "CPU per tick (ingester, e2e)",
    us(e2e.cpuUsPerTick),
    `<= ${TARGET.cpuUsPerTick} µs`,
    e2e.cpuUsPerTick <= TARGET.cpuUsPerTick,
  );
  add("tick -> commit p50 / p99 (e2e)", `${ms(e2e.commit.p50Ms)} / ${ms(e2e.commit.p99Ms)}`);
  add("tick -> commit max (e2e)", ms(e2e.commit.maxMs));
  if (halfRate) {
    const limit = o.pipeline.maxWaitMs + TARGET.latencySlackMs;
    add(
      `half rate: ${int(halfRate.rate as number)} ticks/s x ${o.halfRateSeconds} s`,
      `${int(halfRate.ticks)} ticks`,
      "",
      unverified(halfRate),
    );
    add("  tick -> commit p50", ms(halfRate.commit.p50Ms));
    add(
      "  tick -> commit p99",
      ms(halfRate.commit.p99Ms),
      `<= ${limit} ms`,
      halfRate.commit.p99Ms <= limit,
    );
  }
  add(
    "peak RSS (ingester, e2e)",
    mb(e2e.peakRssMb),
    `<= ${TARGET.peakRssMb} MB`,
    e2e.peakRssMb <= TARGET.peakRssMb,
  );
  const a = rssAt(e2e);
  const growth = Math.max(a.q50, a.q75, a.q100) - a.q25;
  add(
    "RSS at 25/50/75/100 %",
    [a.q25, a.q50, a.q75, a.q100].map((x) => x.toFixed(0)).join(" / ") + " MB",
    `flat (+<= ${TARGET.rssGrowthMb} MB)`,
    growth <= TARGET.rssGrowthMb,
  );
  add("  RSS before ingest", mb(e2e.samples[0]!.rssMb));
  add("  peak V8 heap / external", `${mb(peak(e2e, "heapMb"))} / ${mb(peak(e2e, "externalMb"))}`);
  if (steady) {
    const rss = finalRssMb(steady);
    add(
      `steady: ${int(steady.rate as number)} ticks/s x ${o.steadySeconds} s`,
      `${int(steady.ticks)} ticks`,
      "",
      unverified(steady),
    );
    add("  RSS at the end", mb(rss), `<= ${TARGET.steadyRssMb} MB`, rss <= TARGET.steadyRssMb);
  }
  const cpu = e2e.cpu;
  const share = (x: number | undefined) =>
    x === undefined ? "n/a" : `${x.toFixed(1)} s (${(x / e2e.seconds * 100).toFixed(0)} %)`;
  add("CPU ingester / simulator (e2e)", `${share(cpu.ingester)} / ${share(cpu.simulator)}`);
  add("CPU PostgreSQL server (e2e)", share(cpu.postgres));
  if (low?.queryable) {
    const q = low.queryable;
    const limit = o.pipeline.maxWaitMs + TARGET.latencySlackMs;
    add(
      `low rate: ${low.rate} ticks/s x ${o.lowRateSeconds} s`,
      `${int(low.ticks)} ticks`,
      "",
      unverified(low),
    );
    add("  tick -> queryable p50", ms(q.p50Ms));
    add("  tick -> queryable p99", ms(q.p99Ms), `<= ${limit} ms`, q.p99Ms <= limit);
    add("  tick -> queryable max", ms(q.maxMs));
    add("  tick -> commit p50 / p99", `${ms(low.commit.p50Ms)} / ${ms(low.commit.p99Ms)}`);
    add(
      "  flush interval / poll period",
      `${o.pipeline.maxWaitMs} ms / ${q.pollPeriodMs.toFixed(1)} ms`,
    );
  }

  const header: [string, string, string, string] = ["figure", "value", "target", "ok?"];
  const all = [header, ...rows];
  const width = [0, 1, 2].map((i) => Math.max(...all.map((row) => row[i]!.length)));
  const line = (row: string[]) =>
    row.map((cell, i) => i < 3 ? cell.padEnd(width[i]!) : cell).join("  ").trimEnd();
  return [
    `tickpipe bench: ${int(e2e.ticks)} ticks, ${o.symbols} symbols, simulator rate ${o.rate}`,
    `pipeline: batch ${o.pipeline.maxBatch}, flush ${o.pipeline.maxWaitMs} ms, memory cap ${
      int(o.pipeline.memoryCap ?? BATCHER_DEFAULTS.memoryCap)
    }, write method ${o.pipeline.method ?? "default"}; ingester in its own process (${
      INGEST_V8_FLAGS ?? "no V8 flags"
    })`,
    `machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGb} GiB, ${m.os}; PostgreSQL ${m.postgres} (${m.database}); Deno ${m.deno}; load average ${
      load(m.loadBefore)
    } before, ${load(r.loadAfter)} after`,
    "",
    line(header),
    line(width.map((w) => "-".repeat(w)).concat("---")),
    ...rows.map(line),
  ].join("\n");
}
