// The shapes the language server sends (server/ratchet/engine.py's Engine.status() and the
// ledger's experiments). Every field is optional here: the client must survive an older or
// newer server.

import type { AgentInfo } from './apiKey';

export interface RunningExperiment {
  id: number;
  description?: string;
  slot?: string;
  elapsed?: number;
  budget?: number;
  lastLine?: string;
}

export interface LoopStatus {
  state?: string; // idle | running | paused | awaiting_review | stopping | error
  message?: string;
  tag?: string;
  metric?: string;
  goal?: string;
  running?: RunningExperiment[];
  awaitingReview?: number[];
  best?: number | null;
  bestId?: number | null;
  baseline?: number | null;
  gainPercent?: number | null;
  kept?: number;
  total?: number;
  crashed?: number;
  costUsd?: number;
  /** The metric's run-to-run noise (the chart's band around the running best). */
  noise?: number | null;
  /** The editable file, relative to the project. */
  editable?: string | null;
  project?: string;
  /** The loop's own process, when one runs (it outlives the window); null: none. Absent: a
   * server from before the loop had a process of its own (a restart stops the loop). */
  loop?: { pid: number; attached: boolean } | null;
  /** The server cannot reach its loop's control channel. */
  offline?: boolean;
  /** The project's agent: its kind and the variable its key is read from (never the key). */
  agent?: AgentInfo | null;
}

/** The LSP command and notification names the extension uses (server contract names). */
export const LSP = {
  experiments: 'ratchet.experiments',
  experiment: 'ratchet.experiment',
  stopExperiment: 'ratchet.stopExperiment',
  status: 'ratchet.status',
  report: 'ratchet.report',
  finalize: 'ratchet.finalize',
  statusNotification: 'ratchet/status',
  experimentNotification: 'ratchet/experiment',
} as const;

export interface ExperimentRecord {
  id: number;
  status: string;
  metric?: number | null;
  description?: string;
  commit?: string | null;
  base_commit?: string | null;
  reason?: string;
  diff?: string;
  run_s?: number;
  agent_s?: number;
  cost_usd?: number;
  log_path?: string;
  source?: string;
  started_at?: number;
  finished_at?: number;
  /** The best's level measured beside this candidate (the mean of its control runs). */
  control?: number | null;
  /** `[metric] holdout`'s number, measured on a new best (and the baseline) only. */
  holdout?: number | null;
  /** What it fixed and broke against the best it was made from, case by case: a full row's
   * (`ratchet.experiment`), null where its runs reported no cases. */
  cases?: CaseChanges | null;
  [key: string]: unknown;
}

/** `ratchet show`'s per-case evidence, as the server says it. */
export interface CaseChanges {
  against?: number;
  fixed?: number;
  broken?: number;
  common?: number;
  fixed_ids?: string[];
  broken_ids?: string[];
  /** "fixed 3 (a, b, c), broke 1 (d) of 40 cases": the server's words, ids bounded. */
  words?: string;
}

/** Statuses of an experiment that has not ended. */
export const UNFINISHED = new Set(['proposed', 'awaiting_review', 'running', 'measured']);

export function isFinal(status: string): boolean {
  return !UNFINISHED.has(status);
}

/** The experiments list may come bare or wrapped (`{experiments: [...]}`). */
export function asExperimentList(value: unknown): ExperimentRecord[] {
  const list = Array.isArray(value)
    ? value
    : value && typeof value === 'object' && Array.isArray((value as { experiments?: unknown }).experiments)
      ? (value as { experiments: unknown[] }).experiments
      : [];
  return list
    .filter((item): item is ExperimentRecord => !!item && typeof item === 'object' && typeof (item as ExperimentRecord).id === 'number')
    .map((item) => ({ ...item, status: String(item.status ?? 'unknown') }));
}

/** An experiment id from a command's arguments: `14`, `"14"`, `{id: 14}`, `{experiment: 14}`. */
export function idFrom(arg: unknown): number | 'best' | undefined {
  if (typeof arg === 'number' && Number.isInteger(arg)) {
    return arg;
  }
  if (typeof arg === 'string') {
    if (arg === 'best') {
      return 'best';
    }
    return /^\d+$/.test(arg) ? Number(arg) : undefined;
  }
  if (arg && typeof arg === 'object') {
    const o = arg as { id?: unknown; experiment?: unknown };
    return idFrom(o.id ?? o.experiment);
  }
  return undefined;
}
