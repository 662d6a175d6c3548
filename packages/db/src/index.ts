export { InitStatus, type MessageRole, type TaskMode, TaskStatus } from "@repo/types";
export * from "./client";
export * from "./pg-advisory-lock";
export * from "./pg-pubsub";
export * from "./pglite-lock";
export * from "./schema";
