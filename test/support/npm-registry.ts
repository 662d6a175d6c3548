/**
 * An npm package registry on 127.0.0.1 that speaks the registry protocol npm
 * uses to install (package documents and tarballs), serving packages built
 * here from a few files. Tests run a real `npm ci` against it, with no
 * traffic off this machine.
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { tempDir } from "./git";

export interface RegistryPackage {
  name: string;
  version: string;
  /** Files of the package, `package.json` included (text, or bytes as they are). */
  files: Record<string, string | Buffer>;
}

export interface PublishedPackage {
  name: string;
  version: string;
  tarballUrl: string;
  integrity: string;
}

export interface NpmRegistry {
  /** Base URL, with a trailing slash, for npm_config_registry. */
  url: string;
  packages: PublishedPackage[];
  /** Paths requested so far, in order. */
  requests: string[];
  close(): Promise<void>;
}

function packTarball(pkg: RegistryPackage): Buffer {
  const dir = tempDir("umbra-npm-pkg-");
  try {
    for (const [path, content] of Object.entries(pkg.files)) {
      mkdirSync(join(dir, "package", path, ".."), { recursive: true });
      writeFileSync(join(dir, "package", path), content);
    }
    execFileSync("tar", ["-czf", "package.tgz", "--owner=0", "--group=0", "package"], { cwd: dir });
    return readFileSync(join(dir, "package.tgz"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function startNpmRegistry(packages: RegistryPackage[]): Promise<NpmRegistry> {
  const tarballs = new Map<string, Buffer>();
  const documents = new Map<string, unknown>();
  const requests: string[] = [];
  const server = createServer((req, res) => {
    const path = decodeURIComponent((req.url ?? "/").split("?")[0]!);
    requests.push(path);
    const tarball = tarballs.get(path);
    if (tarball) {
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": tarball.length });
      res.end(tarball);
      return;
    }
    const document = documents.get(path.slice(1));
    res.writeHead(document ? 200 : 404, { "content-type": "application/json" });
    res.end(JSON.stringify(document ?? { error: "not found" }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;

  const published: PublishedPackage[] = [];
  for (const pkg of packages) {
    const tarball = packTarball(pkg);
    const tarballPath = `/${pkg.name}/-/${pkg.name}-${pkg.version}.tgz`;
    tarballs.set(tarballPath, tarball);
    const integrity = `sha512-${createHash("sha512").update(tarball).digest("base64")}`;
    const tarballUrl = `${url}${tarballPath.slice(1)}`;
    const manifest = JSON.parse(String(pkg.files["package.json"] ?? "{}")) as Record<string, unknown>;
    documents.set(pkg.name, {
      name: pkg.name,
      "dist-tags": { latest: pkg.version },
      versions: {
        [pkg.version]: {
          ...manifest,
          name: pkg.name,
          version: pkg.version,
          dist: { tarball: tarballUrl, integrity, shasum: createHash("sha1").update(tarball).digest("hex") },
        },
      },
    });
    published.push({ name: pkg.name, version: pkg.version, tarballUrl, integrity });
  }
  return {
    url,
    packages: published,
    requests,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
