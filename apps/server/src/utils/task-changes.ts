/**
 * The feed of committed task changes: the status store publishes every
 * change after its transaction commits, in order per task; the socket
 * events, the cleanup service's timer and anyone waiting for a cleanup
 * subscribe. A listener that throws is cut off from nothing: the others still hear it.
 *
 * With several server processes on one database, changes another process
 * made are published here too, marked `remote` (see replicas/replica-bus.ts),
 * so a service waiting on a change hears it wherever it was made. Socket
 * events are sent by the process that made the change, so they skip remote ones.
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
