// The maintenance windows of spec.failover.schedule, as a pure function of
// the windows and the time: the window in progress (if any), the next one to
// start, and when the answer next changes (the controller requeues then).
//
// Windows are one-shot intervals [start, end) with a zone offset; overlapping
// windows count as one stretch (the one in progress is the one that started
// first, its end extended to the latest end of those overlapping it, so a
// failover does not end and restart between two windows that touch).
import type { MaintenanceWindow } from '../../api/v1alpha1/failover.js';

export interface ScheduledWindow {
  start: Date;
  end: Date;
  description?: string;
}

export interface ScheduleAt {
  /** The window in progress at `now`. */
  active?: ScheduledWindow;
  /** The next window to start after `now` (after the active one). */
  next?: ScheduledWindow;
  /** Milliseconds from `now` to the next start or end (undefined: nothing ahead). */
  nextBoundaryMs?: number;
}

const parse = (w: MaintenanceWindow): ScheduledWindow => ({
  start: new Date(w.start),
  end: new Date(w.end),
  ...(w.description ? { description: w.description } : {}),
});

export function scheduleAt(schedule: readonly MaintenanceWindow[] | undefined, now: Date): ScheduleAt {
  const t = now.getTime();
  const windows = (schedule ?? [])
    .map(parse)
    .filter((w) => w.end.getTime() > w.start.getTime() && w.end.getTime() > t)
    .sort((a, b) => a.start.getTime() - b.start.getTime());
  let active: ScheduledWindow | undefined;
  for (const w of windows) {
    if (w.start.getTime() > t) continue;
    if (!active) active = { ...w };
    else if (w.end > active.end) active.end = w.end;
  }
  // Windows that start before the active one ends join it.
  if (active) {
    for (const w of windows) {
      if (w.start.getTime() > t && w.start <= active.end && w.end > active.end) active.end = w.end;
    }
  }
  const after = active ? active.end.getTime() : t;
  const next = windows.find((w) => w.start.getTime() > after);
  const boundary = active ? active.end.getTime() : next?.start.getTime();
  return {
    ...(active ? { active } : {}),
    ...(next ? { next } : {}),
    ...(boundary !== undefined ? { nextBoundaryMs: Math.max(0, boundary - t) } : {}),
  };
}

const rfc3339 = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, 'Z');

/** "2026-12-05T21:00:00Z – 2026-12-05T23:00:00Z (Exchange CU14)" for conditions and Events. */
export function describeWindow(w: ScheduledWindow): string {
  return `${rfc3339(w.start)} – ${rfc3339(w.end)}${w.description ? ` (${w.description})` : ''}`;
}

/** status.schedule: the window in progress and the next one, or undefined when there are none. */
export function scheduleStatus(s: ScheduleAt): { activeWindow?: StatusWindow; nextWindow?: StatusWindow } | undefined {
  if (!s.active && !s.next) return undefined;
  const out = (w: ScheduledWindow): StatusWindow => ({
    start: rfc3339(w.start),
    end: rfc3339(w.end),
    ...(w.description ? { description: w.description } : {}),
  });
  return { ...(s.active ? { activeWindow: out(s.active) } : {}), ...(s.next ? { nextWindow: out(s.next) } : {}) };
}

interface StatusWindow {
  start: string;
  end: string;
  description?: string;
}
