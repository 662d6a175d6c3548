/**
 * The configured forges and which one a repository lives on. A forge is
 * configured when its token is set; a repository URL on its host gets pull
 * or merge requests, any other remote gets branch pushes only.
 */

import type { Logger } from "../../logger";
import type { DeliveryConfig, ForgeKind } from "../delivery-config";
import { GithubForge } from "./github";
import { GitlabForge } from "./gitlab";
import { type Forge, projectOnForge } from "./types";

export interface ForgeMatch {
  forge: Forge;
  /** The repository's path on the forge, as written in its URL. */
  project: string;
}

export class Forges {
  private readonly configured: Forge[] = [];

  constructor(config: Pick<DeliveryConfig, "github" | "gitlab">, log: Logger, extra: Forge[] = []) {
    if (config.github.token) this.configured.push(new GithubForge(config.github, log));
    if (config.gitlab.token) this.configured.push(new GitlabForge(config.gitlab));
    this.configured.push(...extra);
  }

  /** The configured forge `repoUrl` lives on, with its path there; null for any other remote. */
  match(repoUrl: string): ForgeMatch | null {
    for (const forge of this.configured) {
      const project = projectOnForge(forge.settings, repoUrl);
      if (project) return { forge, project };
    }
    return null;
  }

  byKind(kind: ForgeKind): Forge | null {
    return this.configured.find((forge) => forge.kind === kind) ?? null;
  }

  list(): readonly Forge[] {
    return this.configured;
  }
}
