// The experiments as the server lists them, refreshed when the loop's status says something
// changed (never more than a few times a second).

import * as vscode from 'vscode';
import { asExperimentList, type ExperimentRecord, type LoopStatus } from './logic/protocol';
import type { ServerManager } from './server';

export function signature(status: LoopStatus): string {
  return JSON.stringify([
    status.state,
    status.total,
    status.kept,
    status.bestId,
    (status.running ?? []).map((r) => r.id),
    status.awaitingReview ?? [],
  ]);
}

export class ExperimentsModel implements vscode.Disposable {
  list: ExperimentRecord[] = [];
  status: LoopStatus | undefined;
  private lastSignature = '';
  private pending: Promise<void> | undefined;
  private again = false;
  private readonly emitter = new vscode.EventEmitter<void>();
  readonly onDidChange = this.emitter.event;
  private readonly disposables: vscode.Disposable[] = [];

  constructor(private readonly server: ServerManager) {
    this.disposables.push(
      server.onStatus((status) => {
        this.status = status;
        const sig = signature(status);
        if (sig !== this.lastSignature) {
          this.lastSignature = sig;
          void this.refresh();
        } else {
          this.emitter.fire(); // elapsed times moved
        }
      }),
      server.onReady(() => void this.refresh()),
    );
  }

  get(id: number): ExperimentRecord | undefined {
    return this.list.find((e) => e.id === id);
  }

  /** Fetches the list; calls during a fetch coalesce into one more fetch after it. */
  refresh(): Promise<void> {
    if (this.pending) {
      this.again = true;
      return this.pending;
    }
    this.pending = (async () => {
      do {
        this.again = false;
        try {
          this.list = asExperimentList(await this.server.request('ratchet.experiments'));
          this.emitter.fire();
        } catch (error) {
          this.server.serverLog.appendLine(`[client] ratchet.experiments failed: ${String(error)}`);
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
    this.disposables.forEach((d) => d.dispose());
    this.emitter.dispose();
  }
}
