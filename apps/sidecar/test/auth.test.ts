import { SidecarClient, SidecarError } from "@repo/workspace";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningSidecar, removeTempDirs, startSidecar, tempDir } from "./helpers";

const ROUTES: Array<[method: string, path: string]> = [
  ["GET", "/health"],
  ["GET", "/alive"],
  ["POST", "/files/read"],
  ["POST", "/files/write"],
  ["POST", "/files/edit"],
  ["POST", "/files/list"],
  ["POST", "/files/grep"],
  ["POST", "/exec"],
  ["GET", "/git/haves"],
  ["POST", "/git/receive?branch=main"],
  ["POST", "/git/commit"],
  ["POST", "/git/save"],
  ["POST", "/git/pack"],
  ["GET", "/no-such-route"],
];

let sidecar: RunningSidecar;

beforeAll(async () => {
  sidecar = await startSidecar(await tempDir());
});

afterAll(async () => {
  await sidecar.stop();
  expect(sidecar.output()).not.toContain(sidecar.token);
  await removeTempDirs();
});

describe("sidecar authentication", () => {
  it.each(ROUTES)("%s %s answers 401 without a token", async (method, path) => {
    const response = await fetch(`${sidecar.endpoint}${path}`, {
      method,
      body: method === "POST" ? JSON.stringify({ path: "a", command: "touch pwned" }) : undefined,
    });
    expect(response.status).toBe(401);
    expect(await response.json()).toEqual({ error: { code: "UNAUTHORIZED", message: expect.any(String) } });
  });

  it.each(ROUTES)("%s %s answers 401 with a wrong token", async (method, path) => {
    const response = await fetch(`${sidecar.endpoint}${path}`, {
      method,
      headers: { authorization: `Bearer ${sidecar.token.slice(0, -1)}x` },
      body: method === "POST" ? JSON.stringify({ path: "a", command: "touch pwned" }) : undefined,
    });
    expect(response.status).toBe(401);
  });

  it("refuses a token sent with another scheme", async () => {
    const response = await fetch(`${sidecar.endpoint}/health`, {
      headers: { authorization: `Basic ${sidecar.token}` },
    });
    expect(response.status).toBe(401);
  });

  it("ran nothing for the refused requests", async () => {
    expect((await sidecar.client.listDir(".")).map((e) => e.name)).not.toContain("pwned");
  });

  it("surfaces a wrong token as an UNAUTHORIZED SidecarError in the client", async () => {
    const client = new SidecarClient({ endpoint: sidecar.endpoint, token: "not-the-token-at-all" });
    const error = await client.health().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SidecarError);
    expect(error).toMatchObject({ status: 401, code: "UNAUTHORIZED" });
  });

  it("answers the right token", async () => {
    expect(await sidecar.client.health()).toMatchObject({ ok: true, workspace: sidecar.workspace });
  });
});
