/**
 * Builds the remote workspace manager with the VM provider named by
 * VM_PROVIDER: sandboxed sidecar processes on this host, or pods on Kubernetes.
 */
import type { ServerConfig } from "../../config";
import type { WorkspaceManagerDeps } from "../index";
import { KubernetesVmProvider } from "../vm/kubernetes-provider";
import { ProcessVmProvider } from "../vm/process-provider";
import type { VmProvider } from "../vm/types";
import { RemoteWorkspaceManager } from "./remote-workspace-manager";

export async function createVmProvider(config: ServerConfig, deps: WorkspaceManagerDeps): Promise<VmProvider> {
  const logger = deps.log.child({ component: "vm" });
  if (config.vmProvider === "kubernetes") {
    return new KubernetesVmProvider({
      namespace: config.kubernetes.namespace,
      image: config.kubernetes.image,
      runtimeClassName: config.kubernetes.runtimeClassName || null,
      readyTimeoutMs: config.vmReadyTimeoutMs,
      logger,
    });
  }
  const { ensureSidecarBundle } = await import("../../../../sidecar/build");
  return new ProcessVmProvider({ dataDir: config.dataDir, sidecarBundlePath: await ensureSidecarBundle(), logger });
}

export async function createRemoteWorkspaceManager(
  config: ServerConfig,
  deps: WorkspaceManagerDeps,
): Promise<RemoteWorkspaceManager> {
  return new RemoteWorkspaceManager({
    db: deps.db,
    clock: deps.clock,
    store: deps.store,
    provider: await createVmProvider(config, deps),
    readyTimeoutMs: config.vmReadyTimeoutMs,
    log: deps.log,
  });
}
