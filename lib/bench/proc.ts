/**
 * What the bench reads from /proc (Linux): CPU time of other processes, the CPU model and
 * the load average. Through `cat`: Deno asks for --allow-all to read /proc itself.
 */

const CLOCK_TICKS_PER_S = 100;

/** The text of the files matching `pattern` under /proc; undefined when there is none. */
export async function readProc(pattern: string): Promise<string | undefined> {
  try {
    const out = await new Deno.Command("sh", {
      args: ["-c", `cat ${pattern} 2>/dev/null`],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    return text === "" ? undefined : text;
  } catch {
    return undefined;
  }
}

/** CPU seconds so far of the simulator and of the PostgreSQL server. */
export interface CpuMark {
  simulator: number | undefined;
  /**
   * The server's postmaster and its processes, those that exited included (undefined when
   * the server is not on this machine).
   */
  postgres: number | undefined;
}

interface ProcStat {
  pid: number;
  comm: string;
  ppid: number;
  /** utime + stime, and the same of the children it has reaped (cutime + cstime), in s. */
  own: number;
  reaped: number;
}

function parseStat(line: string): ProcStat | undefined {
  const open = line.indexOf("(");
  const close = line.lastIndexOf(")");
  if (open < 0 || close < 0) return undefined;
  // After "(comm) ": state ppid ... utime(11) stime(12) cutime(13) cstime(14).
  const f = line.slice(close + 2).split(" ").map(Number);
  const own = (f[11]! + f[12]!) / CLOCK_TICKS_PER_S;
  const reaped = (f[13]! + f[14]!) / CLOCK_TICKS_PER_S;
  if (!Number.isFinite(own) || !Number.isFinite(reaped)) return undefined;
  return {
    pid: Number(line.slice(0, open)),
    comm: line.slice(open + 1, close),
    ppid: f[1]!,
    own,
    reaped,
  };
}

/**
 * The postmaster of the server a connection's backend (`backendPid`) belongs to, when that
 * server runs on this machine: the backend's parent, if it is a postgres process.
 */
export async function postmasterOf(backendPid: number): Promise<number | undefined> {
  const backend = parseStat(await readProc(`/proc/${backendPid}/stat`) ?? "");
  if (!backend || backend.comm !== "postgres") return undefined;
  const parent = parseStat(await readProc(`/proc/${backend.ppid}/stat`) ?? "");
  return parent?.comm === "postgres" ? parent.pid : undefined;
}

/**
 * The CPU seconds used so far by process `simulatorPid`, and by the server of
 * `postmasterPid`: its live processes plus those that exited (a connection's backend ends
 * with it; the postmaster's reaped-children time keeps what it used). Other PostgreSQL
 * servers on the machine are not counted.
 */
export async function cpuMark(
  simulatorPid: number,
  postmasterPid: number | undefined,
): Promise<CpuMark> {
  const mark: CpuMark = { simulator: undefined, postgres: undefined };
  const text = await readProc("/proc/[0-9]*/stat");
  for (const line of text?.split("\n") ?? []) {
    const stat = parseStat(line);
    if (!stat) continue;
    if (stat.pid === simulatorPid) mark.simulator = stat.own;
    else if (postmasterPid !== undefined && stat.pid === postmasterPid) {
      mark.postgres = (mark.postgres ?? 0) + stat.own + stat.reaped;
    } else if (postmasterPid !== undefined && stat.ppid === postmasterPid) {
      mark.postgres = (mark.postgres ?? 0) + stat.own;
    }
  }
  return mark;
}

/** The CPU seconds used between two marks. */
export function cpuDelta(a: CpuMark, b: CpuMark): CpuMark {
  const d = (x: number | undefined, y: number | undefined) =>
    x === undefined || y === undefined ? undefined : y - x;
  return { simulator: d(a.simulator, b.simulator), postgres: d(a.postgres, b.postgres) };
}

/** The 1-minute load average (runnable processes), or undefined off Linux. */
export async function loadAverage(): Promise<number | undefined> {
  const value = Number((await readProc("/proc/loadavg"))?.split(" ")[0]);
  return Number.isFinite(value) ? value : undefined;
}
