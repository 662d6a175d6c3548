/**
 * Initialization steps per mode and the names the UI shows for every
 * InitStatus, including the two resting states INACTIVE and ACTIVE.
 */
import { InitStatus, type TaskMode } from "../enums";

export const STEP_DISPLAY_NAMES: Record<InitStatus, string> = {
  INACTIVE: "Workspace inactive",
  PREPARE_WORKSPACE: "Preparing workspace",
  CREATE_VM: "Creating sandbox",
  WAIT_VM_READY: "Waiting for sandbox",
  VERIFY_VM_WORKSPACE: "Verifying workspace",
  INSTALL_DEPENDENCIES: "Installing dependencies",
  INDEX_REPOSITORY: "Indexing repository",
  ACTIVE: "Workspace ready",
};

const LOCAL_STEPS: readonly InitStatus[] = [
  InitStatus.PREPARE_WORKSPACE,
  InitStatus.INSTALL_DEPENDENCIES,
  InitStatus.INDEX_REPOSITORY,
];
const REMOTE_STEPS: readonly InitStatus[] = [
  InitStatus.CREATE_VM,
  InitStatus.WAIT_VM_READY,
  InitStatus.VERIFY_VM_WORKSPACE,
  InitStatus.INSTALL_DEPENDENCIES,
  InitStatus.INDEX_REPOSITORY,
];

/** The provisioning steps a task of this mode walks through, in order. */
export function getStepsForMode(mode: TaskMode): InitStatus[] {
  return [...(mode === "remote" ? REMOTE_STEPS : LOCAL_STEPS)];
}

/** True for the InitStatus values that are provisioning steps (not INACTIVE/ACTIVE). */
export function isInitStep(status: InitStatus): boolean {
  return status !== InitStatus.INACTIVE && status !== InitStatus.ACTIVE;
}
