// The morning's two commands, their pure part: which experiments "Make Review Branch…" offers
// (the keeps, as `ratchet finalize` counts them), what the picks send to `ratchet.finalize`,
// and the report's page made safe for a webview. No vscode here.

import { formatMetric } from './format';
import type { ExperimentRecord } from './protocol';

export interface KeepItem {
  id: number;
  label: string;
  description: string;
  detail?: string;
  picked: boolean;
}

/** The keeps a review branch carries over, in the order it carries them: kept experiments
 * with a metric, after the first (the baseline every keep is measured against). */
export function keepsOffered(rows: readonly ExperimentRecord[]): ExperimentRecord[] {
  const kept = rows
    .filter((row) => row.status === 'kept' && typeof row.metric === 'number')
    .sort((a, b) => a.id - b.id);
  return kept.slice(1).filter((row) => row.source !== 'baseline');
}

/** The quick pick's items: every keep, all picked (leaving one out is the choice to make). */
export function keepItems(rows: readonly ExperimentRecord[], metric: string): KeepItem[] {
  return keepsOffered(rows).map((row) => ({
    id: row.id,
    label: `exp ${row.id}`,
    description: `${metric} ${formatMetric(row.metric)} · ${row.description ?? ''}`.trim(),
    detail: row.reason || undefined,
    picked: true,
  }));
}

export interface FinalizeArgs {
  squash: boolean;
  exclude: number[];
}

/** What `ratchet.finalize` is sent for these picks: the keeps not picked are left out.
 * Undefined when none is picked (there would be nothing to carry). */
export function finalizeArgs(offered: readonly number[], picked: readonly number[], squash: boolean): FinalizeArgs | undefined {
  const chosen = new Set(picked);
  if (!offered.some((id) => chosen.has(id))) {
    return undefined;
  }
  return { squash, exclude: offered.filter((id) => !chosen.has(id)) };
}

export interface Made {
  /** The review branch; undefined for a patch series (or a server that did not say). */
  branch?: string;
  message: string;
}

/** The server's answer to `ratchet.finalize`, read defensively (an older or newer server). */
export function madeFrom(result: unknown): Made {
  const value = (result && typeof result === 'object' ? result : {}) as { branch?: unknown; message?: unknown };
  const branch = typeof value.branch === 'string' && value.branch ? value.branch : undefined;
  // the server's lines (what was made; how to measure it again) as one notification
  const lines = typeof value.message === 'string' ? value.message.split('\n').filter((line) => line.trim()) : [];
  const message = lines.length > 0 ? lines.join('. ') : branch ? `branch ${branch}` : 'done';
  return { branch, message };
}

/** The report's page with a Content-Security-Policy that allows its inline styles and
 * pictures and nothing else: no script runs, nothing is fetched. */
export function reportPage(html: string): string {
  const policy = `<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:;">`;
  const head = /<head[^>]*>/i.exec(html);
  if (head) {
    const at = head.index + head[0].length;
    return html.slice(0, at) + policy + html.slice(at);
  }
  return `<!doctype html><html><head>${policy}</head><body>${html}</body></html>`;
}
