import { join } from "node:path";
import { UserError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { type Binaries, RELOCATED_RUNTIME } from "./embedded_binaries.ts";
import { ensureDir, exists, run, symlink } from "./embedded_shell.ts";

/** System users the server runs as when tickpipe runs as root (PostgreSQL refuses root). */
const SERVICE_USERS = ["postgres", "tickpipe"];

/** True when this process runs as root. */
export function isRoot(): boolean {
  return Deno.uid() === 0;
}

/**
 * As root: the unprivileged user the server runs as (created when missing), owning
 * `cluster`; when that user cannot reach the binaries or the cluster where they are (e.g.
 * under /root), both move to /var/lib/tickpipe/<hash>/, linked from `root`. Returns the
 * user and the binaries to run.
 */
export async function prepareServiceUser(
  binaries: Binaries,
  root: string,
  cluster: string,
  logger: Logger,
): Promise<{ user: string; binaries: Binaries }> {
  const user = await serviceUser(logger);
  await ensureDir(cluster);
  await run("chown", [`${user}:`, await Deno.realPath(cluster)]);
  if (!(await canUse(user, cluster, join(binaries.bin, "postgres")))) {
    binaries = await relocateForServiceUser(binaries, root, cluster, user);
  }
  await run("chown", ["-R", `${user}:`, await Deno.realPath(cluster)]);
  await Deno.chmod(await Deno.realPath(cluster), 0o700);
  return { user, binaries };
}

/** The user owning `path` unless it is root (the user a root-started server runs as). */
export async function ownerName(path: string): Promise<string | undefined> {
  const result = await run("stat", ["-c", "%U", await Deno.realPath(path)]);
  return result.code === 0 && result.output !== "root" ? result.output : undefined;
}

async function serviceUser(logger: Logger): Promise<string> {
  for (const name of SERVICE_USERS) {
    if ((await run("id", ["-u", name])).code === 0) return name;
  }
  const created = await run("useradd", [
    "--system",
    "--no-create-home",
    "--shell",
    "/usr/sbin/nologin",
    "tickpipe",
  ]);
  if (created.code !== 0) {
    throw new UserError(
      `Cannot create a system user for the embedded PostgreSQL (it refuses to run as root): ${created.output}`,
    );
  }
  logger.info(
    "Created system user tickpipe to run the embedded PostgreSQL (it refuses to run as root)",
  );
  return "tickpipe";
}

/** True when `user` can reach and write `dir` and execute `binary`. */
async function canUse(user: string, dir: string, binary: string): Promise<boolean> {
  const check = await run("sh", [
    "-c",
    'test -x "$1" && test -w "$2" && test -x "$2"',
    "sh",
    binary,
    dir,
  ], {
    asUser: user,
  });
  return check.code === 0;
}

async function relocateForServiceUser(
  binaries: Binaries,
  root: string,
  cluster: string,
  user: string,
): Promise<Binaries> {
  const key = Array.from(
    new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(root))).slice(
      0,
      6,
    ),
  ).map((b) => b.toString(16).padStart(2, "0")).join("");
  const home = `/var/lib/tickpipe/${key}`;
  await Deno.mkdir(home, { recursive: true, mode: 0o755 });
  await Deno.chmod("/var/lib/tickpipe", 0o755);
  const runtime = join(home, RELOCATED_RUNTIME);
  if (!(await exists(join(runtime, "bin", "postgres")))) {
    const copied = await run("cp", ["-a", join(binaries.bin, ".."), runtime]);
    if (copied.code !== 0) {
      throw new UserError(`Cannot copy the embedded PostgreSQL binaries: ${copied.output}`);
    }
  }
  await run("chmod", ["-R", "a+rX", runtime]);
  const runtimeLink = join(root, RELOCATED_RUNTIME);
  if (!(await exists(runtimeLink))) await symlink(runtime, runtimeLink);
  const clusterHome = join(home, "postgres");
  const info = await Deno.lstat(cluster);
  if (!info.isSymlink) {
    await Deno.mkdir(clusterHome, { recursive: true });
    // Move an existing (possibly empty) cluster directory across, then link it back.
    const moved = await run("sh", [
      "-c",
      'cp -a "$1"/. "$2"/ && rm -rf "$1"',
      "sh",
      cluster,
      clusterHome,
    ]);
    if (moved.code !== 0) {
      throw new UserError(`Cannot move the embedded cluster to ${clusterHome}: ${moved.output}`);
    }
    await symlink(clusterHome, cluster);
  }
  await run("chown", ["-R", `${user}:`, clusterHome]);
  if (!(await canUse(user, clusterHome, join(runtime, "bin", "postgres")))) {
    throw new UserError(`Cannot give the embedded PostgreSQL's user "${user}" access to ${home}`);
  }
  return { bin: join(runtime, "bin"), lib: join(runtime, "lib") };
}
