/**
 * Time as a dependency. Everything that reads the time or waits for it takes
 * a Clock, so tests drive the 10-minute warm window with a manual clock in
 * milliseconds instead of sleeping.
 */

export interface TimerHandle {
  cancel(): void;
}

export interface Clock {
  now(): Date;
  /** Runs `fn` after `ms` milliseconds of this clock's time. */
  setTimer(fn: () => void, ms: number): TimerHandle;
}

export const systemClock: Clock = {
  now: () => new Date(),
  setTimer(fn, ms) {
    // setTimeout overflows past 2^31-1 ms (~24.8 days); clamp, callers re-arm.
    const handle = setTimeout(fn, Math.min(Math.max(0, ms), 2_147_483_647));
    handle.unref?.();
    return { cancel: () => clearTimeout(handle) };
  },
};

/** A clock that only moves when told to. Timers fire synchronously inside `advance`. */
export class ManualClock implements Clock {
  private current: number;
  private timers = new Map<number, { at: number; fn: () => void }>();
  private nextId = 1;

  constructor(start: Date | number = Date.UTC(2026, 0, 1)) {
    this.current = typeof start === "number" ? start : start.getTime();
  }

  now(): Date {
    return new Date(this.current);
  }

  setTimer(fn: () => void, ms: number): TimerHandle {
    const id = this.nextId++;
    this.timers.set(id, { at: this.current + Math.max(0, ms), fn });
    return { cancel: () => this.timers.delete(id) };
  }

  /** Moves time forward, firing every timer that falls due, in deadline order. */
  advance(ms: number): void {
    const target = this.current + ms;
    for (;;) {
      let dueId: number | undefined;
      let due: { at: number; fn: () => void } | undefined;
      for (const [id, timer] of this.timers) {
        if (timer.at <= target && (!due || timer.at < due.at)) {
          dueId = id;
          due = timer;
        }
      }
      if (!due || dueId === undefined) break;
      this.timers.delete(dueId);
      this.current = Math.max(this.current, due.at);
      due.fn();
    }
    this.current = target;
  }

  set(time: Date | number): void {
    const target = typeof time === "number" ? time : time.getTime();
    this.advance(Math.max(0, target - this.current));
  }
}
