/**
 * The forges' webhooks (SPEC §5): `POST /api/webhooks/github` and
 * `POST /api/webhooks/gitlab`. They carry their own authentication, so they
 * need no API token (routes marked `signedWebhook`).
 *
 * Invariants:
 * - The body is kept raw and its signature checked before anything of it is
 *   read: GitHub's `X-Hub-Signature-256` (HMAC-SHA256 of the body with
 *   GITHUB_WEBHOOK_SECRET), GitLab's `X-Gitlab-Token` (GITLAB_WEBHOOK_SECRET).
 *   A missing or wrong signature, or no secret configured, is 401 and
 *   changes nothing.
 * - A signed event Umbra does not act on is 202 and ignored; a signed body
 *   that is not JSON is 400. Nothing a sender controls causes a 500.
 * - A delivery is acted on once: its id (`X-GitHub-Delivery`,
 *   `X-Gitlab-Event-UUID` or `Idempotency-Key`, else a hash of the body) is
 *   stored, and a redelivery is 202 without effect.
 * - The action runs in the background (review-loop.ts); the forge gets its
 *   answer at once.
 */
import { createHash } from "node:crypto";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { DeliveryStore } from "../delivery/delivery-store";
import type { ReviewLoop } from "../delivery/review-loop";
import { type ForgeEvent, parseGithubEvent, parseGitlabEvent } from "../delivery/webhook-events";
import { UnauthorizedError, ValidationError } from "../errors";
import { tokenMatches } from "../utils/auth";

declare module "fastify" {
  interface FastifyContextConfig {
    /** The route authenticates its requests by a signature of their own, not the API token. */
    signedWebhook?: boolean;
  }
}

/** Largest webhook body accepted, bytes (GitHub caps its payloads at 25 MB; ordinary events are far smaller). */
const WEBHOOK_BODY_LIMIT = 10 * 1024 * 1024;

export interface WebhookRouteDeps {
  githubSecret?: string;
  gitlabSecret?: string;
  mention: string;
  deliveries: Pick<DeliveryStore, "recordWebhook">;
  loop: Pick<ReviewLoop, "dispatch">;
}

/** True for requests to a route that authenticates by its own signature. */
export function isSignedWebhook(request: FastifyRequest): boolean {
  return request.routeOptions.config?.signedWebhook === true;
}

export function registerWebhookRoutes(app: FastifyInstance, deps: WebhookRouteDeps): void {
  void app.register(async (scope) => {
    // Raw bodies here: the signature covers the bytes as sent.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser("*", { parseAs: "buffer", bodyLimit: WEBHOOK_BODY_LIMIT }, (_request, body, done) =>
      done(null, body),
    );
    const options = { config: { signedWebhook: true }, bodyLimit: WEBHOOK_BODY_LIMIT };

    scope.post("/api/webhooks/github", options, async (request, reply) => {
      const raw = rawBody(request);
      const signature = header(request, "x-hub-signature-256");
      if (!deps.githubSecret || !signature || !(await githubSignatureMatches(deps.githubSecret, raw, signature))) {
        throw new UnauthorizedError("missing or invalid webhook signature");
      }
      const payload = parsePayload(raw, header(request, "content-type"));
      const name = header(request, "x-github-event") ?? "";
      const event = parseGithubEvent(name, payload, deps.mention);
      const id = header(request, "x-github-delivery") ?? bodyHash(raw);
      return accept(reply, deps, "github", name, id, event);
    });

    scope.post("/api/webhooks/gitlab", options, async (request, reply) => {
      const raw = rawBody(request);
      const token = header(request, "x-gitlab-token");
      if (!deps.gitlabSecret || !token || !tokenMatches(token, deps.gitlabSecret)) {
        throw new UnauthorizedError("missing or invalid webhook token");
      }
      const payload = parsePayload(raw, header(request, "content-type"));
      const name = header(request, "x-gitlab-event") ?? "";
      const event = parseGitlabEvent(name, payload, deps.mention);
      const id = header(request, "x-gitlab-event-uuid") ?? header(request, "idempotency-key") ?? bodyHash(raw);
      return accept(reply, deps, "gitlab", name, id, event);
    });
  });
}

async function accept(
  reply: FastifyReply,
  deps: WebhookRouteDeps,
  source: string,
  name: string,
  deliveryId: string,
  event: ForgeEvent | null,
) {
  if (!event) return reply.code(202).send({ status: "ignored" });
  if (!(await deps.deliveries.recordWebhook(source, deliveryId.slice(0, 200), name.slice(0, 100)))) {
    return reply.code(202).send({ status: "duplicate" });
  }
  deps.loop.dispatch(event, deliveryId);
  return reply.code(202).send({ status: "accepted" });
}

async function githubSignatureMatches(secret: string, raw: Buffer, signature: string): Promise<boolean> {
  if (raw.length === 0) return false;
  try {
    const { verify } = await import("@octokit/webhooks-methods");
    return await verify(secret, raw.toString("utf8"), signature);
  } catch {
    return false;
  }
}

function rawBody(request: FastifyRequest): Buffer {
  return Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
}

function header(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name];
  return typeof value === "string" && value.length > 0 ? value : undefined;
}

/** The event's JSON: the body, or GitHub's form encoding (`payload=<json>`). */
function parsePayload(raw: Buffer, contentType: string | undefined): unknown {
  let text = raw.toString("utf8");
  if (contentType?.startsWith("application/x-www-form-urlencoded")) {
    text = new URLSearchParams(text).get("payload") ?? "";
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new ValidationError("the webhook body is not JSON");
  }
}

function bodyHash(raw: Buffer): string {
  return `sha256:${createHash("sha256").update(raw).digest("hex")}`;
}
