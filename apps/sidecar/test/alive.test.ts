/**
 * The liveness probe the server makes before a warm follow-up: GET /alive
 * answers the token without reading the workspace (no git runs for it), and
 * the client asks /health instead of a sidecar from before the route.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { SidecarClient, SidecarError } from "@repo/workspace";
import { afterEach, describe, expect, it } from "vitest";
import { type RunningSidecar, removeTempDirs, startSidecar, tempDir } from "./helpers";

const TOKEN = "t".repeat(32);
let sidecar: RunningSidecar | null = null;
let earlier: Server | null = null;

afterEach(async () => {
  await sidecar?.stop();
  sidecar = null;
  await new Promise((resolve) => (earlier ? earlier.close(resolve) : resolve(undefined)));
  earlier = null;
  await removeTempDirs();
});

/** A sidecar of an earlier release, as it answers on the wire: /health, and 404 for any other GET. */
async function startEarlierSidecar(): Promise<{ endpoint: string; paths: string[] }> {
  const paths: string[] = [];
  earlier = createServer((req, res) => {
    paths.push(req.url ?? "");
    res.setHeader("content-type", "application/json");
    if (req.headers.authorization !== `Bearer ${TOKEN}`) {
      res.statusCode = 401;
      res.end(JSON.stringify({ error: { code: "UNAUTHORIZED", message: "missing or invalid bearer token" } }));
    } else if (req.url === "/health") {
      res.end(JSON.stringify({ ok: true, workspace: "/workspace", head: null, branch: null }));
    } else {
      res.statusCode = 404;
      res.end(JSON.stringify({ error: { code: "NOT_FOUND", message: `no route for GET ${req.url}` } }));
    }
  });
  await new Promise<void>((resolve) => earlier!.listen(0, "127.0.0.1", resolve));
  return { endpoint: `http://127.0.0.1:${(earlier.address() as AddressInfo).port}`, paths };
}

describe("the sidecar's liveness probe", () => {
  it("answers ok without running git, where /health (which reads the head with git) cannot answer", async () => {
    // No git on the sidecar's PATH: whatever needs git fails.
    sidecar = await startSidecar(await tempDir(), { PATH: await tempDir("umbra-empty-path-") });
    expect(await sidecar.client.alive()).toEqual({ ok: true });
    await expect(sidecar.client.health()).rejects.toBeInstanceOf(SidecarError);
  });

  it("asks /health of a sidecar that has no /alive route", async () => {
    const { endpoint, paths } = await startEarlierSidecar();
    const client = new SidecarClient({ endpoint, token: TOKEN });
    expect(await client.alive()).toMatchObject({ ok: true });
    expect(paths).toEqual(["/alive", "/health"]);
  });

  it("does not fall back when /alive refuses the token", async () => {
    const { endpoint, paths } = await startEarlierSidecar();
    const client = new SidecarClient({ endpoint, token: "w".repeat(32) });
    await expect(client.alive()).rejects.toMatchObject({ status: 401, code: "UNAUTHORIZED" });
    expect(paths).toEqual(["/alive"]);
  });
});
