/**
 * Credentials for the server's own git transfers (push, fetch), fed to git
 * through its credential mechanism and nowhere else.
 *
 * For each transfer the credential of the remote's host — a configured
 * forge's token, or an entry of GIT_CREDENTIALS_FILE — is written to a
 * private temporary file (mode 0600 in a 0700 directory) in
 * git-credential-store format, git is pointed at it with
 * `-c credential.helper=store --file=<path>`, and the file is removed when
 * the transfer ends. So the secret never appears in a URL, on a command line
 * (only the file's path does), in git's environment, in a log line or in a
 * sandbox. Helpers from the user's git configuration are switched off first,
 * so no other credential is offered or stored.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { DeliveryConfig, ForgeSettings } from "./delivery-config";

export interface GitCredential {
  username: string;
  password: string;
}

/** The user name a forge expects next to a token over HTTPS. */
const TOKEN_USERNAME: Record<ForgeSettings["kind"], string> = {
  github: "x-access-token",
  gitlab: "oauth2",
};

export class GitCredentials {
  constructor(private readonly config: Pick<DeliveryConfig, "github" | "gitlab" | "hostCredentials">) {}

  /** The credential for `remoteUrl`, or null (local paths, ssh, hosts nothing is configured for). */
  credentialFor(remoteUrl: string): GitCredential | null {
    const url = httpUrl(remoteUrl);
    if (!url) return null;
    for (const forge of [this.config.github, this.config.gitlab]) {
      if (forge.token && new URL(forge.url).host.toLowerCase() === url.host.toLowerCase()) {
        return { username: TOKEN_USERNAME[forge.kind], password: forge.token };
      }
    }
    const path = url.pathname.replace(/^\/+/, "");
    const entry = this.config.hostCredentials
      .filter((candidate) => candidate.protocol === url.protocol.replace(/:$/, ""))
      .filter((candidate) => candidate.host === url.host.toLowerCase())
      .filter((candidate) => candidate.path === "" || path === candidate.path || path.startsWith(`${candidate.path}/`))
      .sort((a, b) => b.path.length - a.path.length)[0];
    return entry ? { username: entry.username, password: entry.password } : null;
  }

  /**
   * Runs `transfer` with the git arguments that give it the credential of
   * `remoteUrl` (or that only switch the user's helpers off when there is
   * none); the credential file lives exactly as long as the transfer.
   */
  async withCredentials<T>(remoteUrl: string, transfer: (configArgs: string[]) => Promise<T>): Promise<T> {
    const credential = this.credentialFor(remoteUrl);
    const url = httpUrl(remoteUrl);
    if (!credential || !url) return transfer(["-c", "credential.helper="]);
    const dir = await mkdtemp(join(tmpdir(), "umbra-git-credential-"));
    const file = join(dir, "credentials");
    try {
      const line = `${url.protocol}//${encodeURIComponent(credential.username)}:${encodeURIComponent(credential.password)}@${url.host}\n`;
      await writeFile(file, line, { mode: 0o600 });
      return await transfer(["-c", "credential.helper=", "-c", `credential.helper=store --file=${file}`]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
}

/** The URL of an http(s) remote, or null for anything else (paths, file://, ssh). */
function httpUrl(remoteUrl: string): URL | null {
  if (!/^https?:\/\//i.test(remoteUrl) || !URL.canParse(remoteUrl)) return null;
  return new URL(remoteUrl);
}
