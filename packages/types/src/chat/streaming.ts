/**
 * What travels while a task initializes and while its agent works.
 */
import type { InitStatus } from "../enums";

export const INIT_PROGRESS_TYPES = [
  "init-start",
  "step-start",
  "step-complete",
  "init-complete",
  "init-error",
  "step-log",
] as const;
export type InitProgressType = (typeof INIT_PROGRESS_TYPES)[number];

/** Progress of one initialization run, as the engine reports it. */
export interface InitializationProgress {
  type: InitProgressType;
  /** The step being run (step-start, step-complete, init-error). */
  currentStep?: InitStatus;
  /** The last step that finished successfully in this run. */
  lastCompletedStep?: InitStatus;
  stepName?: string;
  /** 1-based position of currentStep in getStepsForMode(mode). */
  stepNumber?: number;
  totalSteps: number;
  message?: string;
  error?: string;
  /**
   * step-log: a piece of the running step's output (INSTALL_DEPENDENCIES'
   * setup log), in order, secret values already replaced by `[secret:NAME]`.
   * Not a line: pieces split anywhere; append them as they come.
   */
  log?: string;
}

export type StreamChunk =
  | { type: "text"; messageId: string; text: string }
  | { type: "stdout" | "stderr"; messageId: string; text: string }
  | { type: "tool-call"; messageId: string; toolCallId: string; toolName: string; input: unknown }
  | { type: "tool-result"; messageId: string; toolCallId: string; toolName: string; output: unknown; isError?: boolean }
  | { type: "message-start"; messageId: string; role: "assistant" | "tool" | "system" }
  | { type: "message-end"; messageId: string }
  | { type: "turn-end"; status: "COMPLETED" | "FAILED" | "STOPPED"; error?: string };
