// The context keys `when` and `enablement` clauses read (package.json), from the loop's status
// and the editor's state. Pure: no vscode here; the caller sets only the keys that changed.

import type { LoopStatus } from './protocol';
import { lookOf } from './status';

export interface ContextInput {
  status: LoopStatus | undefined;
  /** Why the server is not running; undefined when it runs. */
  offline: string | undefined;
  /** The active editor's file, relative to the project (undefined: none or outside it). */
  activeFile: string | undefined;
  projects: number;
  /** The workspace is not trusted (Restricted Mode). */
  restricted: boolean;
}

export type ContextKeys = Record<string, boolean | string>;

const LOOP_ON = new Set(['running', 'review', 'paused', 'stopping']);

export function contextKeys(input: ContextInput): ContextKeys {
  const { status, offline } = input;
  const online = offline === undefined && status !== undefined;
  const loopState = online ? lookOf(status) : 'offline';
  const waiting = online ? (status.awaitingReview ?? []).length > 0 : false;
  const editable = status?.editable ?? undefined;
  return {
    'ratchet.hasProject': input.projects > 0,
    'ratchet.multipleProjects': input.projects > 1,
    'ratchet.restricted': input.restricted,
    'ratchet.serverRunning': online,
    'ratchet.loopState': loopState,
    // a loop in its own process counts as running even when this window cannot reach it yet
    'ratchet.loopRunning': LOOP_ON.has(loopState) || (!!status?.loop && loopState !== 'offline'),
    'ratchet.loopAttached': !!status?.loop?.attached,
    'ratchet.hasRunningExperiment': online && (status.running ?? []).length > 0,
    'ratchet.hasPendingProposal': waiting,
    'ratchet.proposalInEditor': waiting && !!editable && input.activeFile === editable,
    'ratchet.hasBest': online && status.bestId !== null && status.bestId !== undefined,
    // a loop has a record (the report and the review branch have something to read)
    'ratchet.hasLoop': online && (status.total ?? 0) > 0,
  };
}

/** The keys whose value differs from `previous` (all of them when there is none). */
export function changedKeys(previous: ContextKeys | undefined, next: ContextKeys): ContextKeys {
  const out: ContextKeys = {};
  for (const [key, value] of Object.entries(next)) {
    if (!previous || previous[key] !== value) {
      out[key] = value;
    }
  }
  return out;
}
