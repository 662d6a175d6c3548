/**
 * What a Pod object says about its sandbox, in the provider interface's terms.
 *
 * Phase mapping: Pending → starting, Running → running, Succeeded/Failed →
 * exited, a pod being deleted → exited ("terminating"). Unknown (the node
 * stopped reporting) stays running: the pod may come back, and the caller's
 * authenticated health check decides whether the sidecar answers. `detail`
 * always names the phase and adds the most telling reason the API gave.
 */
import type { V1ContainerStatus, V1Pod } from "@kubernetes/client-node";
import type { VmStatus } from "../types";
import { CONTAINER_NAME } from "./manifests";

function sidecarContainer(pod: V1Pod): V1ContainerStatus | undefined {
  const statuses = pod.status?.containerStatuses ?? [];
  return statuses.find((status) => status.name === CONTAINER_NAME) ?? statuses[0];
}

function isReady(pod: V1Pod): boolean {
  return (
    pod.status?.conditions?.some((condition) => condition.type === "Ready" && condition.status === "True") ?? false
  );
}

/** Why the container is not running yet, e.g. `ImagePullBackOff: Back-off pulling image "x"`. */
export function waitingReason(pod: V1Pod): string | null {
  const waiting = sidecarContainer(pod)?.state?.waiting;
  if (waiting?.reason) return waiting.message ? `${waiting.reason}: ${waiting.message}` : waiting.reason;
  const unscheduled = pod.status?.conditions?.find(
    (condition) => condition.type === "PodScheduled" && condition.status === "False",
  );
  if (unscheduled) return [unscheduled.reason, unscheduled.message].filter(Boolean).join(": ") || null;
  return null;
}

function exitDetail(pod: V1Pod): string {
  const phase = pod.status?.phase ?? "Unknown";
  const terminated = sidecarContainer(pod)?.state?.terminated;
  const parts = [phase];
  if (terminated) {
    parts.push(`exit code ${terminated.exitCode}`);
    if (terminated.reason) parts.push(terminated.reason);
    if (terminated.message) parts.push(terminated.message);
  } else if (pod.status?.reason || pod.status?.message) {
    parts.push([pod.status.reason, pod.status.message].filter(Boolean).join(": "));
  }
  return parts.join(", ");
}

export function podVmStatus(pod: V1Pod): VmStatus {
  if (pod.metadata?.deletionTimestamp) return { state: "exited", detail: "Terminating" };
  const phase = pod.status?.phase;
  switch (phase) {
    case "Running":
      return { state: "running", detail: isReady(pod) ? "Running, ready" : "Running, not ready" };
    case "Succeeded":
    case "Failed":
      return { state: "exited", detail: exitDetail(pod) };
    case "Unknown":
      return { state: "running", detail: `Unknown${pod.status?.reason ? `: ${pod.status.reason}` : ""}` };
    default: {
      const reason = waitingReason(pod);
      return { state: "starting", detail: reason ? `Pending, ${reason}` : "Pending" };
    }
  }
}
