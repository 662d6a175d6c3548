/**
 * The feed of committed task changes: the status store publishes every
 * change after its transaction commits, in order per task; the socket
 * events, the cleanup service's timer and anyone waiting for a cleanup
 * subscribe. A listener that throws is cut off from nothing: the others still hear it.
 */
import type { TaskChange, TaskChangeListener } from "./task-status";

export class TaskChanges {
  private readonly listeners = new Set<TaskChangeListener>();

  /** Passes a change to every listener (the status store's `onChange`). */
  readonly publish = (change: TaskChange): void => {
    for (const listener of this.listeners) {
      try {
        listener(change);
      } catch {
        // a listener's failure is its own; the others must still hear the change
      }
    }
  };

  /** Registers a listener; returns the function that removes it. */
  subscribe(listener: TaskChangeListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
