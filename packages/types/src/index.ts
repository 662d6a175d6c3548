export * from "./api/repositories";
export * from "./api/schemas";
export * from "./chat/streaming";
export * from "./enums";
export * from "./init/steps";
export * from "./tasks/status";
export * from "./ui/events";
