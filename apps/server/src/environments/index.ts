/**
 * The environment side of the server, built in one place: the secrets store
 * (sealed with the server's SecretBox), per-repository environments, what a
 * task's processes get from them, the environment cache, and the
 * INSTALL_DEPENDENCIES step that uses them all.
 */
import { join } from "node:path";
import type { Db } from "@repo/db";
import type { ServerConfig } from "../config";
import type { WorkspaceManager } from "../execution/types";
import type { Logger } from "../logger";
import type { Metrics } from "../metrics";
import type { Clock } from "../utils/clock";
import type { SecretBox } from "../utils/secret-box";
import { EnvironmentCache } from "./environment-cache";
import { EnvironmentStore } from "./environment-store";
import { DependencyInstaller } from "./install-dependencies";
import { SecretStore } from "./secret-store";
import { TaskEnvironments } from "./task-environment";

export type Environments = Awaited<ReturnType<typeof createEnvironments>>;

/** Builds the environment side; its metrics register on `deps.metrics`. */
export function createEnvironments(
  config: ServerConfig,
  deps: {
    db: Db;
    clock: Clock;
    log: Logger;
    metrics: Metrics;
    workspaces: WorkspaceManager;
    /** The server's SecretBox (SECRETS_KEY or its key file): secrets are sealed with it. */
    box: SecretBox;
  },
) {
  const { db, clock, log, metrics, workspaces, box } = deps;
  const secrets = new SecretStore({ db, box, clock });
  const store = new EnvironmentStore({ db, clock });
  const forTasks = new TaskEnvironments({ environments: store, secrets });
  const cache =
    config.environmentCacheMaxMb > 0
      ? new EnvironmentCache({
          dir: join(config.dataDir, "environments"),
          maxBytes: config.environmentCacheMaxMb * 1024 * 1024,
          clock,
          log: log.child({ component: "env-cache" }),
        })
      : null;
  const setupMetric = (outcome: "succeeded" | "failed", by: number) =>
    metrics.increment(`umbra_environment_setups_${outcome}_total`, `Setup scripts that ran and ${outcome}.`, by);
  setupMetric("succeeded", 0);
  setupMetric("failed", 0);
  const installer = new DependencyInstaller({
    environments: forTasks,
    cache,
    // Products of a setup on this host's sandbox may not fit another backend's (its node, its libc).
    platform: `${workspaces.mode}/${workspaces.vmProvider?.name ?? "host"}`,
    timeoutMs: config.setupTimeoutMs,
    onSetup: (outcome) => setupMetric(outcome, 1),
  });
  if (cache) registerCacheMetrics(metrics, cache);
  return { secrets, store, forTasks, cache, installer };
}

function registerCacheMetrics(metrics: Metrics, cache: EnvironmentCache): void {
  const c = cache.counters;
  metrics.register("umbra_environment_cache_hits_total", "counter", "Setups restored from the cache.", () => c.hits);
  metrics.register(
    "umbra_environment_cache_misses_total",
    "counter",
    "Cache lookups that found nothing.",
    () => c.misses,
  );
  metrics.register("umbra_environment_cache_stores_total", "counter", "Environments stored.", () => c.stores);
  metrics.register("umbra_environment_cache_evictions_total", "counter", "Entries evicted (LRU).", () => c.evictions);
  metrics.register("umbra_environment_cache_bytes", "gauge", "Bytes the cache holds.", () => cache.bytes);
  metrics.register("umbra_environment_cache_entries", "gauge", "Entries the cache holds.", () => cache.entries);
  metrics.register(
    "umbra_environment_cache_max_bytes",
    "gauge",
    "ENVIRONMENT_CACHE_MAX_MB in bytes.",
    () => cache.maxBytes,
  );
}
