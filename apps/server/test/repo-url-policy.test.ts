/**
 * Which repository URLs the server fetches (security/repo-url-policy.ts) and
 * what happens to credentials in them:
 * - URLs on loopback, private, link-local and other non-public addresses —
 *   literal, in any spelling, or behind a name that resolves there — are
 *   refused with 400 and a message naming ALLOWED_REPO_HOSTS, and nothing is
 *   created; listed in ALLOWED_REPO_HOSTS (or a configured forge) they work;
 * - local paths and file:// are refused with ALLOW_LOCAL_REPOS off;
 * - credentials in repoUrl are refused with a message pointing to the forge
 *   and secrets settings, and appear in no answer and no log line of a real
 *   server process.
 * Names are resolved by the system resolver (`localhost`) or, for names
 * that would need DNS, by a resolver injected into the server.
 */
import type { TaskDto } from "@repo/types";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DataDirs } from "../../../test/support/faults";
import { createRepo } from "../../../test/support/git";
import { type GatedGitServer, serveGatedRepo } from "../../../test/support/git-http";
import { eventually } from "../../../test/support/lifecycle";
import { reliabilityCase } from "../../../test/support/reliability";
import { startTestServer, type TestServer } from "../../../test/support/server";
import { spawnServer } from "../../../test/support/server-process";
import { createLogger } from "../src/logger";
import { RepoUrlPolicy, type ResolveHost } from "../src/security/repo-url-policy";

const FILE = "repo-url-policy.test.ts";
type ErrorBody = { error: { code: string; message: string } };
type TaskBody = { task: TaskDto };

/** DNS as the outside world would answer it, for names these tests make up. */
const fakeDns: ResolveHost = async (hostname) => {
  const records: Record<string, string[]> = {
    "rebound.example": ["127.0.0.1"],
    "metadata.example": ["169.254.169.254"],
    "mixed.example": ["93.184.216.34", "10.0.0.8"],
    "public.example": ["93.184.216.34", "2606:2800:220:1::1"],
    "internal.example": ["192.168.7.7"],
  };
  const found = records[hostname];
  if (!found) throw Object.assign(new Error(`${hostname} not found`), { code: "ENOTFOUND" });
  return found;
};

const dataDirs = new DataDirs();
afterAll(() => dataDirs.cleanUp());

describe("repository URLs that point into the server's network", () => {
  let t: TestServer;
  let gated: GatedGitServer;

  beforeAll(async () => {
    t = await startTestServer({ resolveHost: fakeDns });
    gated = await serveGatedRepo(createRepo({ "README.md": "# served over http\n" }), { held: false });
  });
  afterAll(async () => {
    await gated.close();
    await t.close();
  });

  const taskCount = async () => (await t.api<{ tasks: unknown[] }>("GET", "/api/tasks")).body.tasks.length;

  it("refuses loopback, private, link-local and unspecified addresses in every spelling, with a clear error", async () => {
    await reliabilityCase(
      "hostile",
      FILE,
      "SSRF: repoUrl on loopback, private and link-local addresses",
      async (observe) => {
        const before = await taskCount();
        const targets = [
          "http://127.0.0.1:9/repo.git",
          `${gated.url}`,
          "http://10.1.2.3/repo.git",
          "https://172.16.0.1/repo.git",
          "http://192.168.1.1/repo.git",
          "http://169.254.169.254/latest/meta-data/",
          "http://[::1]:8080/repo.git",
          "http://[fd00::1]/repo.git",
          "http://[fe80::1]/repo.git",
          "http://[::ffff:127.0.0.1]/repo.git",
          "http://0.0.0.0/repo.git",
          "http://2130706433/repo.git",
          "http://0x7f.1/repo.git",
          "http://localhost:9/repo.git",
          "http://LOCALHOST./repo.git",
          "http://umbra.localhost/repo.git",
          "http://rebound.example/repo.git",
          "https://metadata.example/latest",
          "https://mixed.example/repo.git",
          "git://internal.example/repo.git",
          "ssh://git@10.0.0.5/org/repo.git",
          "git@192.168.0.9:org/repo.git",
          "git@localhost:org/repo.git",
        ];
        for (const repoUrl of targets) {
          const answer = await t.api<ErrorBody>("POST", "/api/tasks", { repoUrl, message: "true" });
          expect(answer.status, repoUrl).toBe(400);
          expect(answer.body.error.code, repoUrl).toBe("VALIDATION_ERROR");
          expect(answer.body.error.message, repoUrl).toMatch(
            /is a (loopback|private|private \(unique local\)|link-local|unspecified) address; .* unless the host is listed in ALLOWED_REPO_HOSTS/,
          );
        }
        expect(await taskCount()).toBe(before);
        expect(gated.requests()).toBe(0);
        observe(
          `${targets.length} URLs (literal addresses, decimal/hex/IPv4-mapped spellings, names resolving inside) refused with 400 naming ALLOWED_REPO_HOSTS; no task created, nothing fetched`,
        );
      },
    );
  });

  it("names the address a host resolves to", async () => {
    const answer = await t.api<ErrorBody>("POST", "/api/tasks", {
      repoUrl: "https://rebound.example/repo.git",
      message: "true",
    });
    expect(answer.body.error.message).toBe(
      "repoUrl: host rebound.example (it resolves to 127.0.0.1) is a loopback address; repositories on loopback, link-local or private addresses are refused unless the host is listed in ALLOWED_REPO_HOSTS",
    );
  });

  it("fetches from a loopback host listed in ALLOWED_REPO_HOSTS", async () => {
    const allowed = await startTestServer({ env: { ALLOWED_REPO_HOSTS: "127.0.0.1" }, resolveHost: fakeDns });
    try {
      const created = await allowed.api<TaskBody>("POST", "/api/tasks", { repoUrl: gated.url, message: "true" });
      expect(created.status).toBe(201);
      await eventually(async () => {
        const { task } = (await allowed.api<TaskBody>("GET", `/api/tasks/${created.body.task.id}`)).body;
        return task.status === "COMPLETED";
      });
      expect(gated.requests()).toBeGreaterThan(0);
      // Only what is listed: another private address is still refused.
      const other = await allowed.api<ErrorBody>("POST", "/api/tasks", {
        repoUrl: "http://internal.example/repo.git",
        message: "true",
      });
      expect(other.status).toBe(400);
    } finally {
      await allowed.close();
    }
  }, 120_000);
});

describe("RepoUrlPolicy", () => {
  const policy = (options: Partial<ConstructorParameters<typeof RepoUrlPolicy>[0]> = {}) =>
    new RepoUrlPolicy({ allowLocalRepos: true, allowedRepoHosts: [], forgeUrls: [], resolve: fakeDns, ...options });

  it("lets public hosts through, and names it cannot resolve (git reports those)", async () => {
    for (const url of [
      "https://public.example/org/repo.git",
      "git@public.example:org/repo.git",
      "https://93.184.216.34/repo.git",
      "https://[2606:2800:220:1::1]/repo.git",
      "https://unknown.example/repo.git",
    ]) {
      await expect(policy().check(url), url).resolves.toBeUndefined();
    }
  });

  it("allows private hosts by name, address, CIDR range or configured forge", async () => {
    const p = policy({
      allowedRepoHosts: ["internal.example", "10.0.0.0/8", "[::1]"],
      forgeUrls: ["https://169.254.169.254:8443/", "http://rebound.example"],
    });
    for (const url of [
      "git://internal.example/repo.git",
      "http://10.200.0.1/repo.git",
      "https://mixed.example/repo.git",
      "http://[::1]/repo.git",
      "https://169.254.169.254/x.git",
      "https://rebound.example/repo.git",
    ]) {
      await expect(p.check(url), url).resolves.toBeUndefined();
    }
    await expect(p.check("http://192.168.0.1/repo.git")).rejects.toThrow(/private address/);
  });

  it("refuses local paths and file:// unless ALLOW_LOCAL_REPOS", async () => {
    for (const url of ["/srv/repos/app", "file:///srv/repos/app", "FILE:///srv/x"]) {
      await expect(policy({ allowLocalRepos: false }).check(url), url).rejects.toThrow(
        "repoUrl: local repositories (absolute paths and file:// URLs) are disabled on this server; set ALLOW_LOCAL_REPOS=1 to allow them",
      );
      await expect(policy().check(url), url).resolves.toBeUndefined();
    }
  });
});

describe("local repositories with ALLOW_LOCAL_REPOS off", () => {
  it("refuses a local path and a file:// URL, and creates nothing", async () => {
    const t = await startTestServer({ env: { ALLOW_LOCAL_REPOS: "0" } });
    try {
      const repo = createRepo();
      for (const repoUrl of [repo, `file://${repo}`]) {
        const answer = await t.api<ErrorBody>("POST", "/api/tasks", { repoUrl, message: "true" });
        expect(answer.status, repoUrl).toBe(400);
        expect(answer.body.error.message).toContain("ALLOW_LOCAL_REPOS");
      }
      expect((await t.api<{ tasks: unknown[] }>("GET", "/api/tasks")).body.tasks).toEqual([]);
    } finally {
      await t.close();
    }
  }, 120_000);
});

describe("credentials in repoUrl", () => {
  it("are refused with a pointer to the settings, and never answered or logged", async () => {
    await reliabilityCase("hostile", FILE, "credentials embedded in repoUrl", async (observe) => {
      const secret = "s3cr3t-T0KEN-4f1c";
      const dataDir = dataDirs.create("umbra-creds-");
      const server = await spawnServer({ dataDir, env: { LOG_LEVEL: "trace" } });
      const urls = [
        `https://alice:${secret}@github.com/org/repo.git`,
        `https://${secret}@github.com/org/repo.git`,
        `http://x-access-token:${secret}@127.0.0.1:9/repo.git`,
        `git://git:${secret}@example.com/repo.git`,
        `ssh://git:${secret}@example.com/repo.git`,
        `HTTPS://${secret}:x-oauth-basic@gitlab.com/g/r.git`,
      ];
      for (const repoUrl of urls) {
        const answer = await server.api<ErrorBody>("POST", "/api/tasks", { repoUrl, message: "true", title: "t" });
        expect(answer.status, repoUrl).toBe(400);
        expect(answer.body.error).toEqual({
          code: "VALIDATION_ERROR",
          message:
            "repoUrl: repoUrl must not contain credentials; configure the forge token (GITHUB_TOKEN / GITLAB_TOKEN) or store it as a secret (PUT /api/secrets/:name) instead",
        });
        expect(answer.text).not.toContain(secret);
      }
      // The secret in places a server might echo or log: a query string, an unknown route, a broken body.
      await server.api("GET", `/api/tasks?repoUrl=${encodeURIComponent(urls[0]!)}`);
      await server.api("GET", `/api/nothing/${encodeURIComponent(urls[0]!)}`);
      await server.api("POST", "/api/tasks", `{"repoUrl":"${urls[0]}",`);
      const listed = await server.api("GET", "/api/tasks");
      expect(listed.text).not.toContain(secret);
      expect(await server.stop()).toBe(0);
      const logs = server.output();
      expect(logs.split("\n").length).toBeGreaterThan(3);
      expect(logs).not.toContain(secret);
      observe(
        `${urls.length} URL forms refused with 400 pointing to GITHUB_TOKEN / GITLAB_TOKEN and the secrets API; the secret is in no answer and in none of ${logs.split("\n").length} trace log lines`,
      );
    });
  }, 120_000);

  it("are scrubbed from any log line that quotes a URL with them", () => {
    const lines: string[] = [];
    const log = createLogger("info", { write: (line: string) => lines.push(line) });
    log.warn(
      {
        url: "https://user:hunter2@example.com/r.git",
        err: new Error("fatal: unable to access 'https://tok3n@example.com/r.git/'"),
      },
      "git.fetch.failed https://a:b@example.com",
    );
    log.info({ remote: "ssh://git@example.com/r.git" }, "ssh users stay");
    expect(lines.join("")).not.toMatch(/hunter2|tok3n|a:b@/);
    expect(lines[0]).toContain("https://***@example.com/r.git");
    expect(lines[1]).toContain("ssh://git@example.com/r.git");
  });
});
