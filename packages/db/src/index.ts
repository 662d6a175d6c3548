export { InitStatus, type MessageRole, type TaskMode, TaskStatus } from "@repo/types";
export * from "./client";
export * from "./schema";
