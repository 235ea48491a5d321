import type { Logger } from "../log.ts";
import type { Timers } from "../timers.ts";
import { parseFrame, type TwelveDataEvent } from "./events.ts";

/** What `FrameReader` has counted; part of `ClientStats`. */
export interface FrameCounts {
  /** Every frame received, malformed ones included. */
  frames: number;
  /** Valid price events. */
  ticks: number;
  malformed: number;
  /** Malformed frames by reason ("invalid JSON", "invalid price", "timestamp out of range"...). */
  malformedByReason: Record<string, number>;
  unknown: number;
  heartbeats: number;
  /** Event time (epoch ms) of the last tick per symbol. */
  lastTickMs: Record<string, number>;
  /**
   * Epoch ms since which no symbol has been live (the connection down, or no symbol
   * confirmed nor ticking on it yet); undefined while the stream is live.
   */
  notLiveSince: number | undefined;
}

/**
 * The receiving side of the client's connections: parses each frame once, counts it (by
 * kind; a malformed one by reason, logged rate-limited), remembers each symbol's last tick,
 * and whether the stream is live (an open connection with a symbol confirmed or ticking).
 */
export class FrameReader {
  #logger: Logger;
  #timers: Timers;
  #frames = 0;
  #ticks = 0;
  #malformed = 0;
  #malformedBy = new Map<string, number>();
  #unknown = 0;
  #heartbeats = 0;
  #lastTick = new Map<string, number>();
  #live = false;
  #notLiveSince: number | undefined;

  constructor(options: { logger: Logger; timers: Timers }) {
    this.#logger = options.logger;
    this.#timers = options.timers;
    this.#notLiveSince = this.#timers.now();
  }

  /** Frames received so far. */
  get frames(): number {
    return this.#frames;
  }

  /** Valid price events received so far. */
  get ticks(): number {
    return this.#ticks;
  }

  /** Heartbeat replies received so far. */
  get heartbeats(): number {
    return this.#heartbeats;
  }

  /**
   * Reads one frame of a connection (`open` while it is open): the event, or undefined for
   * a frame that could not be used (counted and logged here).
   */
  read(data: unknown, open: boolean): TwelveDataEvent | undefined {
    this.#frames++;
    if (typeof data !== "string") {
      this.#countMalformed("binary frame");
      this.#logger.limited("malformed", "warn", "Ignored a binary frame from Twelve Data");
      return undefined;
    }
    const event = parseFrame(data, this.#timers.now());
    switch (event.event) {
      case "price":
        this.#ticks++;
        this.#lastTick.set(event.symbol, event.timeMs);
        if (!this.#live) this.setLive(open);
        return event;
      case "malformed":
        this.#countMalformed(event.reason);
        this.#logger.limited("malformed", "warn", "Ignored a malformed frame from Twelve Data", {
          reason: event.detail === undefined ? event.reason : `${event.reason}: ${event.detail}`,
          frame: data.length > 200 ? data.slice(0, 200) + "..." : data,
        });
        return undefined;
      case "unknown":
        this.#unknown++;
        this.#logger.limited("unknown", "info", "Received an unknown event from Twelve Data", {
          event: event.name,
        });
        return event;
      case "heartbeat":
        this.#heartbeats++;
        return event;
      default:
        return event;
    }
  }

  /** Live: the connection is open with at least one symbol confirmed or ticking. */
  setLive(live: boolean): void {
    this.#live = live;
    if (live) this.#notLiveSince = undefined;
    else this.#notLiveSince ??= this.#timers.now();
  }

  /** A snapshot of the counts. */
  counts(): FrameCounts {
    return {
      frames: this.#frames,
      ticks: this.#ticks,
      malformed: this.#malformed,
      malformedByReason: Object.fromEntries(this.#malformedBy),
      unknown: this.#unknown,
      heartbeats: this.#heartbeats,
      lastTickMs: Object.fromEntries(this.#lastTick),
      notLiveSince: this.#notLiveSince,
    };
  }

  #countMalformed(reason: string): void {
    this.#malformed++;
    this.#malformedBy.set(reason, (this.#malformedBy.get(reason) ?? 0) + 1);
  }
}
