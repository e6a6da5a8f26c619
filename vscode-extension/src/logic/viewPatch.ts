// What the experiments view is sent: only the rows that changed since the last message (the
// webview patches its DOM and keeps focus and selection). Pure: no vscode here.

import type { TableRow } from './table';

export interface RowPatch {
  /** Rows new or changed, in id order. */
  upsert: TableRow[];
  /** Ids gone from the list (a reset of the ledger, another loop). */
  remove: number[];
  /** True when the webview must drop what it has first (a new project, a reload). */
  reset: boolean;
}

/** Remembers what the webview was last sent, row by row. */
export class PostedRows {
  private readonly sent = new Map<number, string>();
  private fresh = true;

  /** Forget everything: the next patch carries every row (the webview was recreated). */
  clear(): void {
    this.sent.clear();
    this.fresh = true;
  }

  patch(rows: readonly TableRow[]): RowPatch {
    const upsert: TableRow[] = [];
    const seen = new Set<number>();
    for (const row of rows) {
      seen.add(row.id);
      const key = JSON.stringify(row);
      if (this.sent.get(row.id) !== key) {
        this.sent.set(row.id, key);
        upsert.push(row);
      }
    }
    const remove = [...this.sent.keys()].filter((id) => !seen.has(id));
    for (const id of remove) {
      this.sent.delete(id);
    }
    const reset = this.fresh;
    this.fresh = false;
    return { upsert, remove, reset };
  }
}

export function isEmptyPatch(patch: RowPatch): boolean {
  return !patch.reset && patch.upsert.length === 0 && patch.remove.length === 0;
}

/** The webview's side: apply a patch to its rows by id (what its DOM mirrors). */
export function applyPatch(rows: Map<number, TableRow>, patch: RowPatch): { added: number[]; updated: number[]; removed: number[] } {
  const added: number[] = [];
  const updated: number[] = [];
  const removed: number[] = [];
  if (patch.reset) {
    removed.push(...[...rows.keys()].filter((id) => !patch.upsert.some((r) => r.id === id)));
    for (const id of removed) {
      rows.delete(id);
    }
  }
  for (const id of patch.remove) {
    if (rows.delete(id)) {
      removed.push(id);
    }
  }
  for (const row of patch.upsert) {
    (rows.has(row.id) ? updated : added).push(row.id);
    rows.set(row.id, row);
  }
  return { added, updated, removed };
}
