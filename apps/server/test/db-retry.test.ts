/**
 * Reads on a task's path step over a database connection that was dropped
 * (db-retry.ts). The stores are the real ones on the embedded database; the
 * dropped connection is injected at their edge, shaped as the server meets
 * it: drizzle's "Failed query" around node-postgres's "Connection terminated
 * unexpectedly" (what a turn's secrets read got when Postgres ended its
 * connection in the fault-injection suite).
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { databaseTargets, type TestDatabase } from "../../../test/support/databases";
import { EnvironmentStore } from "../src/environments/environment-store";
import { SecretStore } from "../src/environments/secret-store";
import { TaskEnvironments } from "../src/environments/task-environment";
import { systemClock } from "../src/utils/clock";
import { isTransientDatabaseError, retryRead } from "../src/utils/db-retry";
import { SecretBox } from "../src/utils/secret-box";

const pglite = (await databaseTargets()).find((target) => target.name === "pglite")!;
const REPO = "https://git.example.test/acme/api.git";

function droppedConnection(): Error {
  return new Error('Failed query: select "id" from "secrets"', {
    cause: new Error("Connection terminated unexpectedly"),
  });
}

/** Makes the next `failures` calls of `object[method]` throw `error()`; returns how many calls were made. */
function failNext<T extends object, K extends keyof T>(object: T, method: K, failures: number, error: () => Error) {
  const original = (object[method] as (...args: unknown[]) => Promise<unknown>).bind(object);
  const calls = { count: 0 };
  (object as Record<K, unknown>)[method] = async (...args: unknown[]) => {
    calls.count += 1;
    if (calls.count <= failures) throw error();
    return original(...args);
  };
  return calls;
}

describe("reads that step over a dropped database connection", () => {
  let database: TestDatabase;
  let environments: EnvironmentStore;
  let secrets: SecretStore;

  beforeAll(async () => {
    database = await pglite.open();
    environments = new EnvironmentStore({ db: database.db, clock: systemClock });
    secrets = new SecretStore({ db: database.db, box: SecretBox.withKey(randomBytes(32)), clock: systemClock });
    await environments.put({ repoUrl: REPO, env: { MODE: "test" }, agentSecrets: ["API_TOKEN"], network: "off" });
    await secrets.put("API_TOKEN", "token-value-1", REPO);
    await secrets.put("SETUP_ONLY", "setup-value-2");
  });
  afterAll(async () => {
    await database.close();
  });

  it("tells a lost connection from any other failure, through drizzle's wrapping", () => {
    expect(isTransientDatabaseError(droppedConnection())).toBe(true);
    expect(isTransientDatabaseError(Object.assign(new Error("terminating connection"), { code: "57P01" }))).toBe(true);
    const duplicate = Object.assign(new Error("duplicate key value"), { code: "23505" });
    expect(isTransientDatabaseError(new Error("Failed query: insert", { cause: duplicate }))).toBe(false);
  });

  it("gives a task its environment and secrets although the first reads met a dropped connection", async () => {
    const forTasks = new TaskEnvironments({ environments, secrets });
    const environmentReads = failNext(environments, "get", 1, droppedConnection);
    const secretReads = failNext(secrets, "forRepository", 2, droppedConnection);

    const taskEnv = await forTasks.forRepository(REPO);
    expect(taskEnv.agentEnv).toEqual({ MODE: "test", API_TOKEN: "token-value-1" });
    expect(taskEnv.setupEnv).toEqual({ MODE: "test", API_TOKEN: "token-value-1", SETUP_ONLY: "setup-value-2" });
    expect([environmentReads.count, secretReads.count]).toEqual([2, 3]);

    const networkReads = failNext(environments, "get", 1, droppedConnection);
    const server = { mode: "allowlist" as const, allowedDomains: ["registry.npmjs.org"] };
    expect(await forTasks.sandboxNetwork(REPO, server)).toEqual({
      mode: "off",
      allowedDomains: ["registry.npmjs.org"],
    });
    expect(networkReads.count).toBe(2);
  });

  it("fails at once on any other error, without a second read", async () => {
    let reads = 0;
    const refused = Object.assign(new Error("permission denied for table secrets"), { code: "42501" });
    await expect(
      retryRead(async () => {
        reads += 1;
        throw refused;
      }),
    ).rejects.toBe(refused);
    expect(reads).toBe(1);
  });
});
