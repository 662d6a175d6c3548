/**
 * What the process provider tells a sandboxed sidecar about the agent's
 * sandbox inside it: written by the server as JSON into the sandbox's
 * read-only configuration directory, parsed with this schema by the sidecar
 * (SIDECAR_AGENT_BOX). Nothing in it is secret.
 *
 * Paths are as the sidecar sees them (inside its own sandbox).
 */
import { z } from "zod";

const AbsolutePath = z.string().startsWith("/");

/** A cgroup counter: a `key value` line of a flat-keyed cgroup file (e.g. `oom_kill 3` in memory.events). */
export const CgroupCounter = z.object({ file: AbsolutePath, key: z.string().min(1) });
export type CgroupCounter = z.infer<typeof CgroupCounter>;

export const AgentBoxSpec = z.object({
  version: z.literal(1),
  /** The bubblewrap binary. */
  bwrap: AbsolutePath,
  /** User and group id of the agent's processes inside their user namespace. */
  uid: z.number().int().min(1),
  gid: z.number().int().min(1),
  /** bubblewrap arguments that mount the programs the agent may run (read-only system directories, node). */
  mounts: z.array(z.string()),
  /** Compiled seccomp filter (classic BPF) loaded into every command of the agent. */
  seccompFile: AbsolutePath,
  /** Variables added to every command's environment (the egress proxy's). */
  env: z.record(z.string(), z.string()),
  /** The egress forwarder: listen on 127.0.0.1:port, relay each connection to the unix socket. */
  egress: z.object({ port: z.number().int().min(1).max(65535), socket: AbsolutePath }).optional(),
  /**
   * Host-loopback endpoints the policy allows (a model server on the host's 127.0.0.1:port): the
   * sidecar listens on the same port of the sandbox's own loopback and tunnels each connection
   * through the egress proxy (CONNECT `target`), so the endpoint's URL works unchanged inside,
   * also for programs that ignore HTTP_PROXY.
   */
  loopbackForwards: z
    .array(z.object({ port: z.number().int().min(1).max(65535), target: z.string().min(1) }))
    .default([]),
  /** The limits in force, for messages. */
  limits: z.object({
    memoryMb: z.number().int().positive().optional(),
    pids: z.number().int().positive().optional(),
    cpus: z.number().positive().optional(),
    diskMb: z.number().int().positive().optional(),
  }),
  /** Counters that say a limit was hit; absent when that limit is not enforced. */
  counters: z.object({ oomKills: CgroupCounter.optional(), pidsMax: CgroupCounter.optional() }),
});
export type AgentBoxSpec = z.infer<typeof AgentBoxSpec>;
