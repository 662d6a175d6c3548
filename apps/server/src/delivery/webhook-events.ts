/**
 * GitHub and GitLab webhook payloads, parsed with zod into the few events the
 * review loop acts on: a comment on a pull/merge request, a change of a pull
 * request's state, and an issue that asks for Umbra (a comment mentioning it
 * or its label). Anything else — other events, other actions, payloads of an
 * unexpected shape — is `null`: acknowledged and ignored, never an error.
 *
 * Only the fields used are parsed; forges add fields all the time.
 */
import type { PullRequestState } from "@repo/types";
import { z } from "zod";
import type { ForgeKind } from "./delivery-config";
import type { ForgeActor } from "./forges/types";

export type ForgeEvent =
  | {
      kind: "comment";
      forge: ForgeKind;
      project: string;
      number: number;
      /** The comment, with the mention taken out. */
      message: string;
      actor: ForgeActor;
      /** Where a review comment sits, e.g. "src/app.ts line 12". */
      location: string | null;
    }
  | {
      kind: "pull-request";
      forge: ForgeKind;
      project: string;
      number: number;
      url: string;
      state: PullRequestState;
      draft: boolean;
      headBranch: string;
    }
  | {
      kind: "issue";
      forge: ForgeKind;
      project: string;
      repoUrl: string;
      number: number;
      title: string;
      body: string;
      /** What the mentioning comment asked, or null for the label. */
      message: string | null;
      actor: ForgeActor;
      /** The forge already requires write or triage rights for what the actor did (GitHub labels). */
      vouched: boolean;
    };

const user = z.object({ id: z.number().int(), login: z.string() });
const githubRepository = z.object({ full_name: z.string().min(3), clone_url: z.string().min(1) });

const githubIssueComment = z.object({
  action: z.literal("created"),
  comment: z.object({ body: z.string(), user, author_association: z.string().optional() }),
  issue: z.object({
    number: z.number().int().positive(),
    title: z.string(),
    body: z.string().nullish(),
    pull_request: z.object({}).loose().nullish(),
  }),
  repository: githubRepository,
});

const githubReviewComment = z.object({
  action: z.literal("created"),
  comment: z.object({
    body: z.string(),
    user,
    author_association: z.string().optional(),
    path: z.string().nullish(),
    line: z.number().int().nullish(),
    original_line: z.number().int().nullish(),
  }),
  pull_request: z.object({ number: z.number().int().positive() }),
  repository: githubRepository,
});

const githubReview = z.object({
  action: z.literal("submitted"),
  review: z.object({ body: z.string().nullish(), user, author_association: z.string().optional() }),
  pull_request: z.object({ number: z.number().int().positive() }),
  repository: githubRepository,
});

const githubPullRequest = z.object({
  action: z.string(),
  pull_request: z.object({
    number: z.number().int().positive(),
    html_url: z.string(),
    state: z.string(),
    merged: z.boolean().nullish(),
    merged_at: z.string().nullish(),
    draft: z.boolean().nullish(),
    head: z.object({ ref: z.string() }),
  }),
  repository: githubRepository,
});

const githubLabeledIssue = z.object({
  action: z.literal("labeled"),
  label: z.object({ name: z.string() }),
  issue: z.object({
    number: z.number().int().positive(),
    title: z.string(),
    body: z.string().nullish(),
    pull_request: z.unknown().optional(),
  }),
  sender: user,
  repository: githubRepository,
});

/** The event a GitHub delivery (`X-GitHub-Event`) carries, or null when it is not one Umbra acts on. */
export function parseGithubEvent(event: string, payload: unknown, mention: string): ForgeEvent | null {
  const forge = "github" as const;
  switch (event) {
    case "issue_comment": {
      const parsed = githubIssueComment.safeParse(payload);
      if (!parsed.success) return null;
      const { comment, issue, repository } = parsed.data;
      const message = mentioned(comment.body, mention);
      if (message === null) return null;
      const actor = { ...comment.user, association: comment.author_association };
      const project = repository.full_name;
      if (issue.pull_request) {
        if (!message) return null;
        return { kind: "comment", forge, project, number: issue.number, message, actor, location: null };
      }
      return issueEvent(forge, project, repository.clone_url, issue, message || null, actor);
    }
    case "pull_request_review_comment": {
      const parsed = githubReviewComment.safeParse(payload);
      if (!parsed.success) return null;
      const { comment, pull_request, repository } = parsed.data;
      const message = mentioned(comment.body, mention);
      if (!message) return null;
      const line = comment.line ?? comment.original_line;
      const location = comment.path ? `${comment.path}${line ? ` line ${line}` : ""}` : null;
      const actor = { ...comment.user, association: comment.author_association };
      return {
        kind: "comment",
        forge,
        project: repository.full_name,
        number: pull_request.number,
        message,
        actor,
        location,
      };
    }
    case "pull_request_review": {
      const parsed = githubReview.safeParse(payload);
      if (!parsed.success) return null;
      const { review, pull_request, repository } = parsed.data;
      const message = mentioned(review.body ?? "", mention);
      if (!message) return null;
      const actor = { ...review.user, association: review.author_association };
      return {
        kind: "comment",
        forge,
        project: repository.full_name,
        number: pull_request.number,
        message,
        actor,
        location: null,
      };
    }
    case "pull_request": {
      const parsed = githubPullRequest.safeParse(payload);
      if (!parsed.success) return null;
      const { pull_request: pull, repository } = parsed.data;
      const merged = Boolean(pull.merged || pull.merged_at);
      return {
        kind: "pull-request",
        forge,
        project: repository.full_name,
        number: pull.number,
        url: pull.html_url,
        state: merged ? "merged" : pull.state === "open" ? "open" : "closed",
        draft: Boolean(pull.draft),
        headBranch: pull.head.ref,
      };
    }
    case "issues": {
      const parsed = githubLabeledIssue.safeParse(payload);
      if (!parsed.success || parsed.data.issue.pull_request) return null;
      const { label, issue, sender, repository } = parsed.data;
      if (label.name.toLowerCase() !== labelOf(mention)) return null;
      // Labeling takes triage rights on GitHub: the sender has a say in the repository.
      return issueEvent(forge, repository.full_name, repository.clone_url, issue, null, sender, true);
    }
    default:
      return null;
  }
}

const gitlabProject = z.object({
  path_with_namespace: z.string().min(3),
  git_http_url: z.string().min(1),
});
const gitlabUser = z.object({ id: z.number().int(), username: z.string() });

const gitlabNote = z.object({
  user: gitlabUser,
  project: gitlabProject,
  object_attributes: z.object({
    note: z.string(),
    noteable_type: z.string(),
    position: z.object({ new_path: z.string().nullish(), new_line: z.number().int().nullish() }).loose().nullish(),
  }),
  merge_request: z.object({ iid: z.number().int().positive() }).nullish(),
  issue: z.object({ iid: z.number().int().positive(), title: z.string(), description: z.string().nullish() }).nullish(),
});

const gitlabMergeRequest = z.object({
  project: gitlabProject,
  object_attributes: z.object({
    iid: z.number().int().positive(),
    url: z.string(),
    state: z.string(),
    source_branch: z.string(),
    draft: z.boolean().nullish(),
    work_in_progress: z.boolean().nullish(),
  }),
});

const gitlabLabel = z.object({ title: z.string() });
const gitlabIssue = z.object({
  user: gitlabUser,
  project: gitlabProject,
  object_attributes: z.object({
    iid: z.number().int().positive(),
    title: z.string(),
    description: z.string().nullish(),
  }),
  changes: z
    .object({
      labels: z.object({ previous: z.array(gitlabLabel), current: z.array(gitlabLabel) }).nullish(),
    })
    .loose()
    .nullish(),
});

/** The event a GitLab delivery (`X-Gitlab-Event`) carries, or null when it is not one Umbra acts on. */
export function parseGitlabEvent(event: string, payload: unknown, mention: string): ForgeEvent | null {
  const forge = "gitlab" as const;
  switch (event) {
    case "Note Hook": {
      const parsed = gitlabNote.safeParse(payload);
      if (!parsed.success) return null;
      const { user: author, project, object_attributes: note, merge_request, issue } = parsed.data;
      const message = mentioned(note.note, mention);
      if (message === null) return null;
      const actor = { id: author.id, login: author.username };
      if (note.noteable_type === "MergeRequest" && merge_request) {
        if (!message) return null;
        const path = note.position?.new_path;
        const line = note.position?.new_line;
        const location = path ? `${path}${line ? ` line ${line}` : ""}` : null;
        return {
          kind: "comment",
          forge,
          project: project.path_with_namespace,
          number: merge_request.iid,
          message,
          actor,
          location,
        };
      }
      if (note.noteable_type === "Issue" && issue) {
        const asIssue = { number: issue.iid, title: issue.title, body: issue.description };
        return issueEvent(forge, project.path_with_namespace, project.git_http_url, asIssue, message || null, actor);
      }
      return null;
    }
    case "Merge Request Hook": {
      const parsed = gitlabMergeRequest.safeParse(payload);
      if (!parsed.success) return null;
      const { project, object_attributes: mr } = parsed.data;
      return {
        kind: "pull-request",
        forge,
        project: project.path_with_namespace,
        number: mr.iid,
        url: mr.url,
        state: mr.state === "merged" ? "merged" : mr.state === "opened" ? "open" : "closed",
        draft: Boolean(mr.draft ?? mr.work_in_progress),
        headBranch: mr.source_branch,
      };
    }
    case "Issue Hook": {
      const parsed = gitlabIssue.safeParse(payload);
      if (!parsed.success) return null;
      const { user: author, project, object_attributes: issue, changes } = parsed.data;
      const label = labelOf(mention);
      const has = (labels: { title: string }[] | undefined) => labels?.some((l) => l.title.toLowerCase() === label);
      // Only the update that adds the label asks for Umbra, not every later edit of a labelled issue.
      if (!changes?.labels || has(changes.labels.previous) || !has(changes.labels.current)) return null;
      const asIssue = { number: issue.iid, title: issue.title, body: issue.description };
      return issueEvent(forge, project.path_with_namespace, project.git_http_url, asIssue, null, {
        id: author.id,
        login: author.username,
      });
    }
    default:
      return null;
  }
}

/** The label that asks for Umbra: the mention without its "@". */
export function labelOf(mention: string): string {
  return mention.replace(/^@/, "").toLowerCase();
}

/**
 * The comment without the mention, trimmed ("" when it said nothing else),
 * or null when it does not mention Umbra. A mention is the word on its own:
 * `@umbra,` counts, `@umbrella` and `me@umbra.dev` do not.
 */
export function mentioned(body: string, mention: string): string | null {
  const escaped = mention.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const pattern = new RegExp(`(^|[^\\w@.\\-/])${escaped}(?![\\w\\-])[,:]?`, "gi");
  if (!pattern.test(body)) return null;
  pattern.lastIndex = 0;
  return body.replace(pattern, "$1").trim();
}

function issueEvent(
  forge: ForgeKind,
  project: string,
  repoUrl: string,
  issue: { number: number; title: string; body?: string | null },
  message: string | null,
  actor: ForgeActor,
  vouched = false,
): ForgeEvent {
  return {
    kind: "issue",
    forge,
    project,
    repoUrl,
    number: issue.number,
    title: issue.title,
    body: issue.body ?? "",
    message,
    actor,
    vouched,
  };
}
