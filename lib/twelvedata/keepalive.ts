import type { TimerId, Timers } from "../timers.ts";

/** Settings of `Keepalive`. */
export interface KeepaliveOptions {
  /** Interval of `sendHeartbeat`. */
  heartbeatMs: number;
  /** Silence (no frame at all, heartbeat replies included) after which `onSilence` is called. */
  watchdogMs: number;
  timers: Timers;
  /** The number of frames received so far (read on each check: no per-frame call). */
  frames: () => number;
  sendHeartbeat: () => void;
  /** Called once the connection has been silent for `watchdogMs` or more. */
  onSilence: (silentMs: number) => void;
}

/**
 * The heartbeats and the no-data watchdog of one open connection: a quiet market still
 * answers heartbeats, so only a dead (or stalled) socket stays silent for `watchdogMs`.
 */
export class Keepalive {
  #options: KeepaliveOptions;
  #heartbeat: TimerId | undefined;
  #watchdog: TimerId | undefined;
  #frames = 0;
  #since = 0;

  constructor(options: KeepaliveOptions) {
    this.#options = options;
  }

  /** Starts both timers (the connection just opened). */
  start(): void {
    this.stop();
    const { timers, heartbeatMs, watchdogMs } = this.#options;
    this.#frames = this.#options.frames();
    this.#since = timers.now();
    this.#heartbeat = timers.setInterval(() => this.#options.sendHeartbeat(), heartbeatMs);
    const every = Math.min(5_000, Math.max(20, Math.floor(watchdogMs / 5)));
    this.#watchdog = timers.setInterval(() => this.#check(), every);
  }

  /** Stops both timers. */
  stop(): void {
    this.#options.timers.clearInterval(this.#heartbeat);
    this.#options.timers.clearInterval(this.#watchdog);
    this.#heartbeat = this.#watchdog = undefined;
  }

  #check(): void {
    const now = this.#options.timers.now();
    const frames = this.#options.frames();
    if (frames !== this.#frames) {
      this.#frames = frames;
      this.#since = now;
      return;
    }
    const silent = now - this.#since;
    if (silent < this.#options.watchdogMs) return;
    this.stop();
    this.#options.onSilence(silent);
  }
}
