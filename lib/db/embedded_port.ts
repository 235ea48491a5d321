/**
 * The embedded server's port: the one asked for, else the one remembered in the data
 * directory, else the first free one from 54329.
 */
import type { Logger } from "../log.ts";
import { UserError } from "../errors.ts";

/** The embedded server's port unless one is set or remembered. */
export const DEFAULT_EMBEDDED_PORT = 54329;
/** How many ports after a busy one are tried before asking the system for any free port. */
const PORT_SEARCH = 100;

/** Why a port cannot be used, and what to do about it. */
export function portInUse(port: number, explicit: boolean): string {
  return explicit
    ? `the port is in use by another program (TICKPIPE_EMBEDDED_PORT=${port}); set ` +
      "TICKPIPE_EMBEDDED_PORT to a free port, or unset it to let tickpipe choose one"
    : "the port is in use by another program; set TICKPIPE_EMBEDDED_PORT to a free port";
}

/** True when nothing listens on 127.0.0.1:`port` (the server's only address). */
function portFree(port: number): boolean {
  try {
    Deno.listen({ hostname: "127.0.0.1", port }).close();
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.AddrInUse) return false;
    throw error;
  }
}

/**
 * The port to start on: `explicit` (which must be free), else the remembered one or the
 * default, else the first free port after it, else any free port.
 */
export async function choosePort(
  explicit: number | undefined,
  portFile: string,
  logger: Logger,
): Promise<number> {
  if (explicit !== undefined) {
    if (!portFree(explicit)) {
      throw new UserError(
        `Cannot start the embedded PostgreSQL on port ${explicit}: ${portInUse(explicit, true)}`,
      );
    }
    return explicit;
  }
  const remembered = Number((await Deno.readTextFile(portFile).catch(() => "")).trim());
  const wanted = Number.isInteger(remembered) && remembered > 0 && remembered < 65536
    ? remembered
    : DEFAULT_EMBEDDED_PORT;
  if (portFree(wanted)) return wanted;
  let chosen: number | undefined;
  for (let p = wanted + 1; p <= Math.min(65535, wanted + PORT_SEARCH) && !chosen; p++) {
    if (portFree(p)) chosen = p;
  }
  if (chosen === undefined) {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    chosen = (listener.addr as Deno.NetAddr).port;
    listener.close();
  }
  logger.info(
    `Port ${wanted} is in use by another program: the embedded PostgreSQL takes ${chosen}, ` +
      `remembered in ${portFile} (TICKPIPE_EMBEDDED_PORT chooses one)`,
  );
  return chosen;
}
