import type { DatabaseConfig } from "../../lib/config.ts";

/** A postgres:// URL for `db` (for passing DATABASE_URL to a task under test). */
export function databaseUrl(db: DatabaseConfig): string {
  const auth = `${encodeURIComponent(db.user)}${
    db.password ? ":" + encodeURIComponent(db.password) : ""
  }`;
  const host = db.host.includes(":") ? `[${db.host}]` : db.host;
  return `postgres://${auth}@${host}:${db.port}/${
    encodeURIComponent(db.database)
  }?sslmode=${db.tls}`;
}
