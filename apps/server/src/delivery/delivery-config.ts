/**
 * The delivery settings of the environment (SPEC §4): the default delivery
 * mode, the forges (GitHub or GitHub Enterprise Server, GitLab) with their
 * tokens and webhook secrets, the mention that reaches Umbra in a comment,
 * and a file of git credentials for other hosts.
 *
 * A forge counts as configured when its token is set: only then are pull or
 * merge requests opened on it. Its webhook secret alone lets its webhooks in.
 * Secrets are kept here and handed only to the git credential helper and the
 * forge clients; `secrets()` lists them so that messages can be scrubbed.
 */
import { readFileSync } from "node:fs";
import { DELIVERY_MODES, type DeliveryMode } from "@repo/types";
import { z } from "zod";

export type ForgeKind = "github" | "gitlab";

export interface ForgeSettings {
  kind: ForgeKind;
  /** The forge's web address, e.g. https://github.com or https://ghe.example.com (no trailing slash). */
  url: string;
  /** Its REST API root: api.github.com for github.com, `<url>/api/v3` for Enterprise; GitLab's is `<url>` (the client adds /api/v4). */
  apiUrl: string;
  token?: string;
  webhookSecret?: string;
}

/** One entry of GIT_CREDENTIALS_FILE: credentials for a host (and optionally a path prefix). */
export interface HostCredential {
  protocol: string;
  /** host[:port], lower case. */
  host: string;
  /** Path prefix the entry is limited to ("" for the whole host). */
  path: string;
  username: string;
  password: string;
}

export interface DeliveryConfig {
  /** The delivery of a task that names none (DELIVERY). Default `branch`. */
  defaultMode: DeliveryMode;
  github: ForgeSettings;
  gitlab: ForgeSettings;
  /** What a comment says to reach Umbra (MENTION). Default `@umbra`. */
  mention: string;
  /** Credentials for git hosts that are not configured forges (GIT_CREDENTIALS_FILE). */
  hostCredentials: HostCredential[];
}

const optional = z
  .string()
  .trim()
  .transform((value) => (value === "" ? undefined : value))
  .optional();

const webUrl = (fallback: string) =>
  z
    .string()
    .trim()
    .default(fallback)
    .refine((value) => URL.canParse(value) && /^https?:$/.test(new URL(value).protocol), {
      message: "must be an http(s) URL",
    })
    .transform((value) => value.replace(/\/+$/, ""));

const DeliveryEnvSchema = z.object({
  DELIVERY: z.enum(DELIVERY_MODES, { message: "must be none, branch or pull-request" }).default("branch"),
  GITHUB_URL: webUrl("https://github.com"),
  GITHUB_TOKEN: optional,
  GITHUB_WEBHOOK_SECRET: optional,
  GITLAB_URL: webUrl("https://gitlab.com"),
  GITLAB_TOKEN: optional,
  GITLAB_WEBHOOK_SECRET: optional,
  MENTION: z
    .string()
    .trim()
    .default("@umbra")
    .refine((value) => /^@?[\w.-]+$/.test(value), { message: "must be a single word such as @umbra" }),
  GIT_CREDENTIALS_FILE: optional,
});

export class DeliveryConfigError extends Error {
  constructor(
    readonly variable: string,
    detail: string,
  ) {
    super(detail);
    this.name = "DeliveryConfigError";
  }
}

/** Parses the delivery variables; throws DeliveryConfigError naming the first bad one. */
export function loadDeliveryConfig(env: NodeJS.ProcessEnv): DeliveryConfig {
  const parsed = DeliveryEnvSchema.safeParse(env);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new DeliveryConfigError(String(issue.path[0] ?? "environment"), issue.message);
  }
  const e = parsed.data;
  return {
    defaultMode: e.DELIVERY,
    github: {
      kind: "github",
      url: e.GITHUB_URL,
      apiUrl: isGithubDotCom(e.GITHUB_URL) ? "https://api.github.com" : `${e.GITHUB_URL}/api/v3`,
      token: e.GITHUB_TOKEN,
      webhookSecret: e.GITHUB_WEBHOOK_SECRET,
    },
    gitlab: {
      kind: "gitlab",
      url: e.GITLAB_URL,
      apiUrl: e.GITLAB_URL,
      token: e.GITLAB_TOKEN,
      webhookSecret: e.GITLAB_WEBHOOK_SECRET,
    },
    mention: e.MENTION.startsWith("@") ? e.MENTION : `@${e.MENTION}`,
    hostCredentials: e.GIT_CREDENTIALS_FILE ? readCredentialsFile(e.GIT_CREDENTIALS_FILE) : [],
  };
}

/** Every secret of the configuration, longest first, for scrubbing text that leaves the server. */
export function deliverySecrets(config: DeliveryConfig): string[] {
  const values = [
    config.github.token,
    config.github.webhookSecret,
    config.gitlab.token,
    config.gitlab.webhookSecret,
    ...config.hostCredentials.map((entry) => entry.password),
  ];
  return [...new Set(values.filter((value): value is string => Boolean(value && value.length >= 4)))].sort(
    (a, b) => b.length - a.length,
  );
}

/** Replaces every configured secret in `text` with `***`: for any text that leaves the server. */
export function secretScrubber(config: DeliveryConfig): (text: string) => string {
  const secrets = deliverySecrets(config);
  return (text) => secrets.reduce((scrubbed, secret) => scrubbed.split(secret).join("***"), text);
}

function isGithubDotCom(url: string): boolean {
  const host = new URL(url).hostname.toLowerCase();
  return host === "github.com" || host === "www.github.com";
}

/**
 * Reads a file in git-credential-store format: one `https://user:password@host[/path]`
 * per line, user and password percent-encoded. Blank lines and `#` comments are skipped.
 */
function readCredentialsFile(path: string): HostCredential[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new DeliveryConfigError("GIT_CREDENTIALS_FILE", `cannot be read (${(error as Error).message})`);
  }
  const entries: HostCredential[] = [];
  text.split("\n").forEach((raw, index) => {
    const line = raw.trim();
    if (!line || line.startsWith("#")) return;
    const url = URL.canParse(line) ? new URL(line) : null;
    if (!url?.host || !url.password) {
      // The line is not echoed: it holds a secret.
      throw new DeliveryConfigError(
        "GIT_CREDENTIALS_FILE",
        `line ${index + 1} is not of the form https://user:password@host`,
      );
    }
    entries.push({
      protocol: url.protocol.replace(/:$/, ""),
      host: url.host.toLowerCase(),
      path: url.pathname.replace(/^\/+|\/+$/g, ""),
      username: decodeURIComponent(url.username),
      password: decodeURIComponent(url.password),
    });
  });
  return entries;
}
