// One project's experiments: the full list once per (re)connect, then the server's
// `ratchet/experiment` deltas. A server without deltas (one from before them) is read again
// when its status says something changed, at most a few times a second.

import * as vscode from 'vscode';
import type { ProjectClient } from './client';
import { LSP, type ExperimentRecord, type LoopStatus } from './logic/protocol';
import { ExperimentStore } from './logic/store';

/** What changes in a status that a server without deltas signals by a new list. */
export function signature(status: LoopStatus): string {
  return JSON.stringify([status.state, status.total, status.kept, status.bestId, (status.running ?? []).map((r) => r.id), status.awaitingReview ?? []]);
}

/** Rows per `ratchet.experiments` page. */
const PAGE = 500;

export class ExperimentsModel implements vscode.Disposable {
  readonly store = new ExperimentStore();
  status: LoopStatus | undefined;
  private lastSignature = '';
  private pending: Promise<void> | undefined;
  private again = false;
  private readonly emitter = new vscode.EventEmitter<ReadonlySet<number>>();
  /** The ids that changed (empty: only the status moved, e.g. a running clock). */
  readonly onDidChange = this.emitter.event;
  private readonly disposables: vscode.Disposable[] = [];

  constructor(readonly client: ProjectClient) {
    this.disposables.push(
      client.onStatus((status) => {
        this.status = status;
        const sig = signature(status);
        if (!this.deltas && sig !== this.lastSignature) {
          this.lastSignature = sig;
          void this.refresh();
        } else {
          this.emitter.fire(new Set());
        }
      }),
      client.onRows((rows) => {
        const changed = this.store.applyRows(rows);
        if (changed.size > 0) {
          this.emitter.fire(changed);
        }
      }),
      client.onReady(() => void this.refresh()),
    );
  }

  /** The server sends `ratchet/experiment` and answers `ratchet.experiment` (both came with
   * `ratchet.stopExperiment`, which it advertises; `ratchet.experiment` it may not). */
  get deltas(): boolean {
    return this.client.running && this.client.advertises(LSP.stopExperiment);
  }

  list(): ExperimentRecord[] {
    return this.store.list();
  }

  get(id: number): ExperimentRecord | undefined {
    return this.store.get(id);
  }

  /** One experiment with its diff and log tail (`ratchet.experiment`), else the row known. */
  async full(id: number): Promise<ExperimentRecord | undefined> {
    if (this.deltas) {
      const row = await this.client.request(LSP.experiment, id);
      if (row && typeof row === 'object') {
        const changed = this.store.applyRows(row);
        if (changed.size > 0) {
          this.emitter.fire(changed);
        }
      }
    }
    return this.store.get(id);
  }

  /** Every experiment as a light row: in pages (`{since, limit}`) from a server with deltas,
   * whole from an older one (it ignores the arguments). */
  private async fetchAll(): Promise<unknown[]> {
    if (!this.deltas) {
      const list = await this.client.request(LSP.experiments);
      return Array.isArray(list) ? (list as unknown[]) : [];
    }
    const rows: unknown[] = [];
    for (let since = -1; ; ) {
      const page = await this.client.request(LSP.experiments, { since, limit: PAGE });
      const list = Array.isArray(page) ? (page as { id?: unknown }[]) : [];
      rows.push(...list);
      const last = list.length ? Number(list[list.length - 1].id) : NaN;
      if (list.length < PAGE || !Number.isFinite(last) || last <= since) {
        return rows;
      }
      since = last;
    }
  }

  /** Fetches the whole list; calls during a fetch coalesce into one more fetch after it. */
  refresh(): Promise<void> {
    if (this.pending) {
      this.again = true;
      return this.pending;
    }
    this.pending = (async () => {
      do {
        this.again = false;
        try {
          const changed = this.store.replaceAll(await this.fetchAll());
          this.emitter.fire(changed);
        } catch (error) {
          this.client.warn(`ratchet.experiments failed: ${String(error)}`);
        }
        if (this.again) {
          await new Promise((resolve) => setTimeout(resolve, 200));
        }
      } while (this.again);
    })().finally(() => {
      this.pending = undefined;
    });
    return this.pending;
  }

  dispose(): void {
    vscode.Disposable.from(...this.disposables).dispose();
    this.emitter.dispose();
  }
}
