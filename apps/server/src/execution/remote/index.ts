/**
 * Builds the remote workspace manager with the VM provider named by
 * VM_PROVIDER: sandboxed sidecar processes on this host, or pods on Kubernetes.
 */
import type { ServerConfig } from "../../config";
import type { WorkspaceManagerDeps } from "../types";
import { KubernetesVmProvider } from "../vm/kubernetes/kubernetes-provider";
import { ProcessVmProvider } from "../vm/process/process-provider";
import { locateSidecarBundle } from "../vm/process/sidecar-bundle";
import type { VmProvider } from "../vm/types";
import { RemoteWorkspaceManager } from "./remote-workspace-manager";

export async function createVmProvider(config: ServerConfig, deps: WorkspaceManagerDeps): Promise<VmProvider> {
  const logger = deps.log.child({ component: "vm" });
  if (config.vmProvider === "kubernetes") {
    const provider = new KubernetesVmProvider({
      namespace: config.kubernetes.namespace,
      image: config.kubernetes.image,
      runtimeClassName: config.kubernetes.runtimeClassName || null,
      readyTimeoutMs: config.vmReadyTimeoutMs,
      egressProxyUrl: config.kubernetes.egressProxyUrl,
      network: config.sandbox.network,
      onEgressDenied: deps.onEgressDenied,
      agentBinaries: config.agentBinaries,
      logger,
    });
    // Pods are pointed at the proxy only when K8S_EGRESS_PROXY is set; without it there is nothing to serve.
    if (config.kubernetes.egressProxyUrl) {
      const { host, port } = config.kubernetes.egressListen;
      try {
        await provider.serveEgress(port, host);
      } catch (error) {
        await provider.close();
        throw new Error(`cannot serve the pods' egress proxy on ${host}:${port} (K8S_EGRESS_LISTEN)`, { cause: error });
      }
    }
    return provider;
  }
  return new ProcessVmProvider({
    dataDir: config.dataDir,
    sidecarBundlePath: locateSidecarBundle(config.sidecarBundle),
    logger,
    network: config.sandbox.network,
    limits: config.sandbox.limits,
    onEgressDenied: deps.onEgressDenied,
  });
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
    secrets: deps.secrets,
    agentState: deps.agentState,
    agentMounts: deps.agentMounts,
    readyTimeoutMs: config.vmReadyTimeoutMs,
    log: deps.log,
  });
}
