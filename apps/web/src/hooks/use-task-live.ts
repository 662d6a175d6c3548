/**
 * Keeps one task's page live on top of the query cache: the task, its
 * messages and its diff come from TanStack Query (one fetch each on load);
 * the task's socket room feeds status, init-progress, stream-chunk and
 * delivery events into the cache and into the page's reducer (streamed
 * output, step progress, re-initialization). Refetches happen only when an
 * event says something changed:
 * - a turn ended (`turn-end`): messages, diff and files, once each;
 * - a turn or initialization started from an idle task (a follow-up, maybe
 *   from another window): the messages, once, to show the new user message;
 * - a message ended that this page saw only part of: the messages;
 * - a re-join after a reconnect: task, messages and diff;
 * - while the socket is offline: everything, every few seconds.
 */
import { isBusy, type StreamChunkEvent } from "@repo/types";
import { useQueryClient } from "@tanstack/react-query";
import { useCallback, useEffect, useMemo, useReducer, useRef } from "react";
import { api, errorText } from "../api";
import { ApiError } from "../api/client";
import {
  applyStatusEvent,
  forgetTask,
  invalidateTurnResults,
  lacksPreparedWorkspace,
  queryKeys,
  storeTask,
  useDiffQuery,
  useMessagesQuery,
  useTaskQuery,
} from "../api/queries";
import type { Task } from "../api/schemas";
import { type ConnectionState, type TaskRoomHandlers, useConnectionState, useTaskRoom } from "../api/socket";
import { INITIAL_STATE, isReinitializing, type TaskLiveState, taskLiveReducer } from "../task-live-state";

/** How often the page polls while the socket is offline. */
const OFFLINE_POLL_MS = 5_000;

export interface TaskLive extends TaskLiveState {
  connection: ConnectionState;
  reinitializing: boolean;
  diffLoading: boolean;
  refresh: () => void;
  send: (message: string) => Promise<void>;
  stop: () => Promise<void>;
  archive: () => Promise<void>;
  remove: () => Promise<void>;
  openPullRequest: () => Promise<void>;
}

export function useTaskLive(taskId: string): TaskLive {
  const client = useQueryClient();
  const [state, dispatch] = useReducer(taskLiveReducer, INITIAL_STATE);
  const connection = useConnectionState();
  const taskQuery = useTaskQuery(taskId);
  const messagesQuery = useMessagesQuery(taskId);
  const diffQuery = useDiffQuery(taskId);
  const taskRef = useRef<Task | null>(null);
  taskRef.current = state.task;

  useEffect(() => {
    if (taskQuery.data) dispatch({ type: "task", task: taskQuery.data });
  }, [taskQuery.data]);

  useEffect(() => {
    const error = taskQuery.error;
    if (!error || taskQuery.data) return;
    const notFound = error instanceof ApiError && error.code === "NOT_FOUND";
    dispatch({ type: "load-error", message: errorText(error), notFound });
  }, [taskQuery.error, taskQuery.data]);

  useEffect(() => {
    if (!messagesQuery.data) return;
    const task = taskRef.current;
    dispatch({ type: "messages", messages: messagesQuery.data, turnOver: task ? !isBusy(task) : false });
  }, [messagesQuery.data]);

  const refresh = useCallback(() => {
    void client.invalidateQueries({ queryKey: queryKeys.task(taskId) });
    void client.invalidateQueries({ queryKey: queryKeys.messages(taskId) });
    void client.invalidateQueries({ queryKey: queryKeys.diff(taskId) });
  }, [client, taskId]);

  const store = useCallback(
    (task: Task) => {
      storeTask(client, task);
      dispatch({ type: "task", task });
    },
    [client],
  );

  const onChunk = (event: StreamChunkEvent) => {
    const partial = event.type === "message-end" && state.streamed.some((i) => i.id === event.messageId && !i.complete);
    dispatch({ type: "chunk", event });
    if (event.type === "turn-end") invalidateTurnResults(client, taskId);
    else if (partial) void client.invalidateQueries({ queryKey: queryKeys.messages(taskId) });
  };

  const handlers = useRef<TaskRoomHandlers>({});
  handlers.current = {
    onJoined: (ack, rejoined) => {
      if (ack.ok) store(ack.task);
      if (rejoined) {
        // Events may have been missed while the socket was down.
        void client.invalidateQueries({ queryKey: queryKeys.messages(taskId) });
        void client.invalidateQueries({ queryKey: queryKeys.diff(taskId) });
        if (!ack.ok) void client.invalidateQueries({ queryKey: queryKeys.task(taskId) });
      }
    },
    onStatus: (event) => {
      const before = taskRef.current ?? client.getQueryData<Task>(queryKeys.task(taskId));
      if (!before) return;
      const after = applyStatusEvent(before, event);
      store(after);
      if (!isBusy(before) && isBusy(after)) void client.invalidateQueries({ queryKey: queryKeys.messages(taskId) });
      if (lacksPreparedWorkspace(before, after)) void client.invalidateQueries({ queryKey: queryKeys.task(taskId) });
    },
    onInitProgress: (event) => dispatch({ type: "init-progress", event }),
    onStreamChunk: onChunk,
    onDelivery: (delivery) => {
      dispatch({ type: "delivery", delivery });
      client.setQueryData<Task>(queryKeys.task(taskId), (task) => (task ? { ...task, delivery } : task));
    },
  };
  useTaskRoom(taskId, handlers);

  useEffect(() => {
    if (connection !== "offline") return;
    const timer = setInterval(refresh, OFFLINE_POLL_MS);
    return () => clearInterval(timer);
  }, [connection, refresh]);

  const send = useCallback(
    async (message: string) => {
      store(await api.sendMessage(taskId, message));
      // The status event of the new run refetches the messages; without a socket, do it here.
      if (connection === "offline") void client.invalidateQueries({ queryKey: queryKeys.messages(taskId) });
    },
    [taskId, store, client, connection],
  );
  const stop = useCallback(async () => store(await api.stopTask(taskId)), [taskId, store]);
  const archive = useCallback(async () => store(await api.archiveTask(taskId)), [taskId, store]);
  const remove = useCallback(async () => {
    await api.deleteTask(taskId);
    forgetTask(client, taskId);
  }, [taskId, client]);
  const openPullRequest = useCallback(async () => store(await api.openPullRequest(taskId)), [taskId, store]);

  const reinitializing = useMemo(() => isReinitializing(state), [state]);
  return {
    ...state,
    diff: diffQuery.data ?? null,
    diffError: diffQuery.error ? errorText(diffQuery.error) : null,
    diffLoading: diffQuery.isFetching,
    connection,
    reinitializing,
    refresh,
    send,
    stop,
    archive,
    remove,
    openPullRequest,
  };
}
