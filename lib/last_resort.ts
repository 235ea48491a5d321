/**
 * The process-wide listeners for what no `try` can catch: an exception thrown from a timer
 * or an I/O callback (e.g. postgres.js 3.4.9 writing to the socket of a connection that has
 * just died, porsager/postgres#1154 and #1208) and a promise rejection nobody handles.
 * Without them Deno prints a stack trace and exits.
 *
 * Two kinds of handlers, each registration returning its own release function:
 * - `onUncaught` (the task runner, `runMain`): both kinds of event end up there;
 * - `tolerateRejections` (ingest, which holds unwritten ticks): while one is registered,
 *   an unhandled rejection goes to it instead and the process carries on. Uncaught
 *   exceptions still go to `onUncaught`: after one, the state of the program is unknown.
 */

/** Receives the error or rejection reason. */
export type UncaughtHandler = (error: unknown) => void;

const uncaughtHandlers = new Set<UncaughtHandler>();
const rejectionHandlers = new Set<UncaughtHandler>();
let listening = false;

function onError(event: ErrorEvent): void {
  const handler = [...uncaughtHandlers].at(-1);
  if (!handler) return;
  event.preventDefault();
  handler(event.error ?? new Error(event.message));
}

function onRejection(event: PromiseRejectionEvent): void {
  const handlers = rejectionHandlers.size > 0
    ? [...rejectionHandlers]
    : [...uncaughtHandlers].slice(-1);
  if (handlers.length === 0) return;
  event.preventDefault();
  for (const handler of handlers) handler(event.reason);
}

function update(): void {
  const wanted = uncaughtHandlers.size + rejectionHandlers.size > 0;
  if (wanted === listening) return;
  listening = wanted;
  if (wanted) {
    globalThis.addEventListener("error", onError);
    globalThis.addEventListener("unhandledrejection", onRejection);
  } else {
    globalThis.removeEventListener("error", onError);
    globalThis.removeEventListener("unhandledrejection", onRejection);
  }
}

function register(set: Set<UncaughtHandler>, handler: UncaughtHandler): () => void {
  // A wrapper per registration, so registering the same function twice is two registrations.
  const entry: UncaughtHandler = (error) => handler(error);
  set.add(entry);
  update();
  return () => {
    set.delete(entry);
    update();
  };
}

/**
 * Sends uncaught exceptions (and unhandled rejections, unless tolerated) to `handler`
 * instead of Deno's default crash; the latest registration wins. Returns the release.
 */
export function onUncaught(handler: UncaughtHandler): () => void {
  return register(uncaughtHandlers, handler);
}

/** Sends unhandled rejections to `handler` (which logs them) and keeps going. Returns the release. */
export function tolerateRejections(handler: UncaughtHandler): () => void {
  return register(rejectionHandlers, handler);
}
