import type { Logger } from "../log.ts";
import { Job, type WorkerResult } from "./jobs.ts";
import { countFrames, parseFrames } from "./worker_feed.ts";
import { ingest, loadPipeline } from "./worker_ingest.ts";

/** Parses the job a worker is given on its stdin (JSON, see `Job`). */
export function parseJob(text: string): Job {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new TypeError(`Cannot read the bench job: ${(error as Error).message}`);
  }
  const parsed = Job.safeParse(json);
  if (!parsed.success) {
    throw new TypeError(`Cannot read the bench job: ${parsed.error.issues[0]?.message}`);
  }
  return parsed.data;
}

/** Runs one measurement in this process (the worker's). */
export function runJob(job: Job, logger: Logger): Promise<WorkerResult> {
  switch (job.kind) {
    case "count":
      return countFrames(job);
    case "parse":
      return parseFrames(job, logger);
    case "pipeline":
      return loadPipeline(job, logger);
    case "ingest":
      return ingest(job, logger);
  }
}
