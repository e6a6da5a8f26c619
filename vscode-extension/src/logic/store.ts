// The experiments as the client knows them: a map by id that takes the server's full list
// once (on connect, after a restart) and then one row per `ratchet/experiment` notification.
// Pure: no vscode here, so the delta logic is unit-tested.

import { asExperimentList, type ExperimentRecord } from './protocol';

/** Fields a light row may leave out that a full row (`ratchet.experiment`) carries. */
const HEAVY = ['diff', 'log_tail', 'trace_tail', 'cases'] as const;

export class ExperimentStore {
  private readonly rows = new Map<number, ExperimentRecord>();
  /** Bumped on every change: views compare it instead of the rows. */
  version = 0;

  get size(): number {
    return this.rows.size;
  }

  get(id: number): ExperimentRecord | undefined {
    return this.rows.get(id);
  }

  /** In id order. */
  list(): ExperimentRecord[] {
    return [...this.rows.values()].sort((a, b) => a.id - b.id);
  }

  /** The highest id known: what `ratchet.experiments {since}` asks after. */
  lastId(): number {
    let last = -1;
    for (const id of this.rows.keys()) {
      last = Math.max(last, id);
    }
    return last;
  }

  /** Replaces everything with a full list; returns the ids that changed, appeared or went. */
  replaceAll(value: unknown): Set<number> {
    const next = new Map(asExperimentList(value).map((row) => [row.id, row] as const));
    const changed = new Set<number>();
    for (const id of this.rows.keys()) {
      if (!next.has(id)) {
        changed.add(id);
      }
    }
    for (const [id, row] of next) {
      if (this.merge(row)) {
        changed.add(id);
      }
    }
    for (const id of changed) {
      if (!next.has(id)) {
        this.rows.delete(id);
      }
    }
    if (changed.size > 0) {
      this.version++;
    }
    return changed;
  }

  /** Applies rows (a `ratchet/experiment` notification, a `since` page); returns the ids that
   * changed. Rows the store has not seen are added; others are updated field by field. */
  applyRows(value: unknown): Set<number> {
    const changed = new Set<number>();
    for (const row of asExperimentList(Array.isArray(value) ? value : [value])) {
      if (this.merge(row)) {
        changed.add(row.id);
      }
    }
    if (changed.size > 0) {
      this.version++;
    }
    return changed;
  }

  /** A light row keeps the heavy fields a full row brought earlier, unless its status moved
   * on (then the old diff or log may be stale and is dropped). */
  private merge(row: ExperimentRecord): boolean {
    const old = this.rows.get(row.id);
    const next: ExperimentRecord = { ...row };
    if (old && old.status === row.status) {
      for (const key of HEAVY) {
        if ((next[key] === undefined || next[key] === '') && old[key]) {
          (next as Record<string, unknown>)[key] = old[key];
        }
      }
    }
    if (old && sameRow(old, next)) {
      return false;
    }
    this.rows.set(row.id, next);
    return true;
  }
}

function sameRow(a: ExperimentRecord, b: ExperimentRecord): boolean {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  for (const key of keys) {
    if (JSON.stringify(a[key]) !== JSON.stringify(b[key])) {
      return false;
    }
  }
  return true;
}
