/** Every benchmark section, in the order a full run takes them. */
import { agentTurnSection } from "../sections/agent-turn";
import { cleanupLagSection } from "../sections/cleanup-lag";
import { concurrencySection } from "../sections/concurrency";
import { crossServerStopSection } from "../sections/cross-server-stop";
import { dueQuerySection } from "../sections/due-query";
import { environmentCacheSection } from "../sections/environment-cache";
import { followUpSection } from "../sections/follow-up";
import { largeRepoSection } from "../sections/large-repo";
import { outputFloodSection } from "../sections/output-flood";
import { reinitLargeSection } from "../sections/reinit-large";
import { saveCostSection } from "../sections/save-cost";
import { saveMemorySection } from "../sections/save-memory";
import { serverMemorySection } from "../sections/server-memory";
import { timeToActiveSection } from "../sections/time-to-active";
import { warmSandboxesSection } from "../sections/warm-sandboxes";
import type { Section } from "./section";

export const SECTIONS: readonly Section[] = [
  timeToActiveSection,
  followUpSection,
  concurrencySection,
  cleanupLagSection,
  dueQuerySection,
  saveCostSection,
  saveMemorySection,
  reinitLargeSection,
  largeRepoSection,
  agentTurnSection,
  environmentCacheSection,
  outputFloodSection,
  crossServerStopSection,
  serverMemorySection,
  warmSandboxesSection,
];
