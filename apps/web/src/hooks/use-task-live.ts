/**
 * Keeps one task's page live: loads the task, its messages and its diff,
 * joins the task's socket room (again after every reconnect, then refetches
 * everything, so a server restart needs no reload) and folds status,
 * init-progress and stream-chunk events into the state. When a turn ends the
 * messages and the diff are refetched so the server's copy replaces what was
 * streamed.
 */
import { isBusy, type TaskDto } from "@repo/types";
import { useCallback, useEffect, useMemo, useReducer, useRef } from "react";
import { api, errorText } from "../api";
import { ApiError } from "../api/client";
import { type TaskRoomHandlers, useSocketConnected, useTaskRoom } from "../api/socket";
import { INITIAL_STATE, isReinitializing, type TaskLiveState, taskLiveReducer } from "../task-live-state";
import { useOnFocus } from "./use-now";

/** How often the page polls while the socket is down. */
const OFFLINE_POLL_MS = 5_000;

export interface TaskLive extends TaskLiveState {
  connected: boolean;
  reinitializing: boolean;
  refresh: () => void;
  send: (message: string) => Promise<void>;
  stop: () => Promise<void>;
  archive: () => Promise<void>;
}

export function useTaskLive(taskId: string): TaskLive {
  const [state, dispatch] = useReducer(taskLiveReducer, INITIAL_STATE);
  const connected = useSocketConnected();
  const taskRef = useRef<TaskDto | null>(null);
  taskRef.current = state.task;
  // Only the newest request of each kind may write its answer.
  const generation = useRef({ task: 0, messages: 0, diff: 0 });

  const loadTask = useCallback(async () => {
    const mine = ++generation.current.task;
    try {
      const task = await api.getTask(taskId);
      if (mine === generation.current.task) dispatch({ type: "task", task });
    } catch (error) {
      if (mine !== generation.current.task) return;
      const notFound = error instanceof ApiError && error.code === "NOT_FOUND";
      dispatch({ type: "load-error", message: errorText(error), notFound });
    }
  }, [taskId]);

  const loadMessages = useCallback(
    async (turnOver: boolean) => {
      const mine = ++generation.current.messages;
      try {
        const messages = await api.getMessages(taskId);
        if (mine === generation.current.messages) dispatch({ type: "messages", messages, turnOver });
      } catch {
        // the task load reports why the server is unreachable
      }
    },
    [taskId],
  );

  const loadDiff = useCallback(async () => {
    const mine = ++generation.current.diff;
    try {
      const diff = await api.getDiff(taskId);
      if (mine === generation.current.diff) dispatch({ type: "diff", diff });
    } catch (error) {
      if (mine === generation.current.diff) dispatch({ type: "diff-error", message: errorText(error) });
    }
  }, [taskId]);

  const refresh = useCallback(() => {
    const busy = taskRef.current ? isBusy(taskRef.current) : false;
    void loadTask();
    void loadMessages(!busy);
    void loadDiff();
  }, [loadTask, loadMessages, loadDiff]);

  useEffect(() => {
    dispatch({ type: "reset" });
    refresh();
  }, [refresh]);

  const afterTurn = useCallback(() => {
    void loadMessages(true);
    void loadDiff();
  }, [loadMessages, loadDiff]);

  const handlers = useRef<TaskRoomHandlers>({});
  handlers.current = {
    onJoined: (ack) => {
      if (ack.ok) dispatch({ type: "task", task: ack.task });
      void loadMessages(ack.ok ? !isBusy(ack.task) : false);
      void loadDiff();
      if (!ack.ok) void loadTask();
    },
    onStatus: (event) => {
      const before = taskRef.current;
      dispatch({ type: "status-event", event });
      if (before && isBusy(before) && !isBusy(event)) afterTurn();
      else if (before && !isBusy(before) && isBusy(event)) void loadMessages(false);
    },
    onInitProgress: (event) => dispatch({ type: "init-progress", event }),
    onStreamChunk: (event) => {
      dispatch({ type: "chunk", event });
      // A message that ended is final on the server: fetch it to replace the streamed copy.
      if (event.type === "message-end") void loadMessages(false);
      if (event.type === "turn-end") afterTurn();
    },
  };
  useTaskRoom(taskId, handlers);

  useOnFocus(refresh);

  useEffect(() => {
    if (connected) return;
    const timer = setInterval(refresh, OFFLINE_POLL_MS);
    return () => clearInterval(timer);
  }, [connected, refresh]);

  const send = useCallback(
    async (message: string) => {
      const task = await api.sendMessage(taskId, message);
      dispatch({ type: "task", task });
      void loadMessages(false);
    },
    [taskId, loadMessages],
  );
  const stop = useCallback(async () => {
    dispatch({ type: "task", task: await api.stopTask(taskId) });
  }, [taskId]);
  const archive = useCallback(async () => {
    dispatch({ type: "task", task: await api.archiveTask(taskId) });
    void loadDiff();
  }, [taskId, loadDiff]);

  const reinitializing = useMemo(() => isReinitializing(state), [state]);
  return {
    ...state,
    connected,
    reinitializing,
    refresh,
    send,
    stop,
    archive,
  };
}
