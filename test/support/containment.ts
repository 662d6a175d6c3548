/**
 * Fixtures for the sandbox containment suite: stand-ins on host loopback for
 * what an attacker inside a sandbox would go for (the model endpoint the
 * policy allows, a service it must not reach), a command runner that keeps
 * the output, and a victim sandbox whose heartbeat shows it kept running.
 */
import { existsSync, readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { CommandResult, SidecarClient } from "@repo/workspace";

export interface LoopbackService {
  port: number;
  /** Requests it has received. */
  hits: number;
  close(): Promise<void>;
}

/** An HTTP server on 127.0.0.1 answering every request with `body`. */
export async function startLoopbackService(body: unknown): Promise<LoopbackService> {
  const service = { port: 0, hits: 0, close: async () => {} };
  const server: Server = createServer((_req, res) => {
    service.hits++;
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(body));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  service.port = (server.address() as AddressInfo).port;
  service.close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  return service;
}

export interface RunResult extends CommandResult {
  stdout: string;
  stderr: string;
  output: string;
}

/** Runs `command` in a sandbox and keeps what it printed. */
export async function runIn(client: SidecarClient, command: string, timeoutMs = 60_000): Promise<RunResult> {
  let stdout = "";
  let stderr = "";
  let output = "";
  const result = await client.runCommand(command, {
    timeoutMs,
    onOutput: (stream, text) => {
      output += text;
      if (stream === "stdout") stdout += text;
      else stderr += text;
    },
  });
  return { ...result, stdout, stderr, output };
}

/**
 * A command that writes a counter into `file` ten times a second for
 * `seconds`: started in a victim sandbox, it shows that sandbox kept running
 * while another one was attacked.
 */
export function heartbeatCommand(file: string, seconds: number): string {
  return `i=0; while [ $i -lt ${seconds * 10} ]; do i=$((i + 1)); echo $i > ${file}.tmp; mv ${file}.tmp ${file}; sleep 0.1; done`;
}

/** The counter a heartbeat command last wrote, read from the host; 0 before the first beat. */
export function heartbeat(path: string): number {
  if (!existsSync(path)) return 0;
  return Number(readFileSync(path, "utf8").trim()) || 0;
}

/** Fields of /proc/<pid>/status as seen from the host (Uid, CapEff, ...). */
export function processStatus(pid: number): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const line of readFileSync(`/proc/${pid}/status`, "utf8").split("\n")) {
    const at = line.indexOf(":");
    if (at > 0) fields[line.slice(0, at)] = line.slice(at + 1).trim();
  }
  return fields;
}
