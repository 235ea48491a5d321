import type { ClientStats } from "./client_options.ts";

/**
 * What makes the stream unhealthy, as one line for /healthz, or undefined when it is fine:
 * the key refused (after it had worked: the client keeps retrying), every symbol refused,
 * or no symbol live (confirmed or ticking on an open connection) for longer than `graceMs`.
 */
export function streamProblem(
  stats: ClientStats,
  nowMs: number,
  graceMs: number,
  options: { expectSymbols?: boolean } = {},
): string | undefined {
  if (stats.keyRefusedSince !== undefined) {
    const seconds = Math.round((nowMs - stats.keyRefusedSince) / 1000);
    return `twelve data refuses the API key (for ${seconds} s, since ${
      new Date(stats.keyRefusedSince).toISOString()
    }); retrying`;
  }
  // A hot standby subscribes to nothing until it takes a lease over: that is not a problem.
  if (options.expectSymbols === false) return undefined;
  const refused = Object.keys(stats.refused).length;
  if (stats.subscribed.length === 0 && refused > 0) {
    return `no symbol subscribed: twelve data refused all ${refused}`;
  }
  if (stats.notLiveSince !== undefined && nowMs - stats.notLiveSince > graceMs) {
    const seconds = Math.round((nowMs - stats.notLiveSince) / 1000);
    return `no symbol subscribed for ${seconds} s (websocket ${stats.state})`;
  }
  return undefined;
}
