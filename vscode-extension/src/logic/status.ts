// The status bar item's text, tooltip and look, from a `ratchet/status` payload.

import { formatClock, formatCost, formatGain, formatMetric } from './format';
import type { LoopStatus } from './protocol';

export type Look = 'idle' | 'running' | 'paused' | 'review' | 'stopping' | 'error' | 'offline';

export interface StatusView {
  text: string;
  /** Markdown. */
  tooltip: string;
  look: Look;
}

export interface StatusExtras {
  /** Seconds since the payload arrived: the running clock keeps ticking between updates. */
  sinceUpdate?: number;
  /** Why the server is not running (then the look is `offline`). */
  offline?: string;
}

const ICONS: Record<Look, string> = {
  idle: '$(beaker)',
  running: '$(sync~spin)',
  paused: '$(debug-pause)',
  review: '$(eye)',
  stopping: '$(loading~spin)',
  error: '$(error)',
  offline: '$(circle-slash)',
};

export function lookOf(status: LoopStatus): Look {
  switch (status.state) {
    case 'running':
      return (status.awaitingReview?.length ?? 0) > 0 && !(status.running?.length) ? 'review' : 'running';
    case 'awaiting_review':
      return 'review';
    case 'paused':
      return 'paused';
    case 'stopping':
      return 'stopping';
    case 'error':
      return 'error';
    default:
      return 'idle';
  }
}

/** `val_bpb 0.9932 ↓0.47%`, or '' before anything is measured. */
export function bestText(status: LoopStatus): string {
  if (status.best === null || status.best === undefined) {
    return '';
  }
  // no gain to show while the best is the baseline itself
  const gain = Math.abs(status.gainPercent ?? 0) >= 0.005 ? formatGain(status.gainPercent, status.goal) : '';
  return `${status.metric ?? 'metric'} ${formatMetric(status.best)}${gain ? ` ${gain}` : ''}`;
}

export function keptText(status: LoopStatus): string {
  if (status.total === undefined || status.total === null) {
    return '';
  }
  return `${status.kept ?? 0}/${status.total} kept`;
}

export function statusView(status: LoopStatus | undefined, extras: StatusExtras = {}): StatusView {
  if (extras.offline !== undefined || !status) {
    const why = extras.offline ?? 'the language server is starting';
    return {
      text: `${ICONS.offline} Ratchet`,
      tooltip: `**Ratchet** — ${escapeMarkdown(why)}\n\nClick to open the experiments view.`,
      look: 'offline',
    };
  }
  const look = lookOf(status);
  const parts: string[] = [];
  const running = status.running ?? [];
  const waiting = status.awaitingReview ?? [];
  if (look === 'running' && running.length > 0) {
    const first = running[0];
    const more = running.length > 1 ? ` +${running.length - 1}` : '';
    parts.push(`${ICONS.running} exp ${first.id}${more}`);
    const elapsed = (first.elapsed ?? 0) + (extras.sinceUpdate ?? 0);
    const budget = first.budget ?? 0;
    parts.push(budget > 0 ? `${formatClock(Math.min(elapsed, budget * 3))}/${formatClock(budget)}` : formatClock(elapsed));
  } else if (look === 'running') {
    parts.push(`${ICONS.running} proposing`);
  } else if (look === 'review') {
    const ids = waiting.length > 0 ? waiting.map((id) => `exp ${id}`).join(', ') : 'a proposal';
    parts.push(`${ICONS.review} ${ids} awaiting review`);
  } else if (look === 'paused') {
    parts.push(`${ICONS.paused} paused`);
  } else if (look === 'stopping') {
    parts.push(`${ICONS.stopping} stopping`);
  } else if (look === 'error') {
    parts.push(`${ICONS.error} Ratchet error`);
  } else {
    parts.push(`${ICONS.idle} Ratchet`);
  }
  const best = bestText(status);
  if (best) {
    parts.push(best);
  }
  const kept = keptText(status);
  if (kept) {
    parts.push(kept);
  }
  return { text: parts.join(' · '), tooltip: tooltipOf(status, look, extras), look };
}

const STATE_WORDS: Record<Look, string> = {
  idle: 'idle',
  running: 'running',
  paused: 'paused: running experiments finish, no new one starts',
  review: 'waiting for your review',
  stopping: 'stopping',
  error: 'error',
  offline: 'offline',
};

function tooltipOf(status: LoopStatus, look: Look, extras: StatusExtras): string {
  const lines: string[] = [];
  const tag = status.tag ? ` — loop \`${status.tag}\`` : '';
  lines.push(`**Ratchet**${tag}: ${STATE_WORDS[look]}`);
  if (status.message) {
    lines.push('', escapeMarkdown(status.message));
  }
  for (const run of status.running ?? []) {
    const elapsed = (run.elapsed ?? 0) + (extras.sinceUpdate ?? 0);
    const budget = run.budget ? ` of ${formatClock(run.budget)}` : '';
    lines.push('', `$(sync~spin) **exp ${run.id}** ${escapeMarkdown(run.description ?? '')} — ${formatClock(elapsed)}${budget}${run.slot ? ` on ${escapeMarkdown(run.slot)}` : ''}`);
    if (run.lastLine) {
      lines.push('', `\`${run.lastLine.replace(/`/g, "'").slice(0, 160)}\``);
    }
  }
  if ((status.awaitingReview ?? []).length > 0) {
    lines.push('', `$(eye) awaiting review: ${status.awaitingReview!.map((id) => `exp ${id}`).join(', ')} — Accept & Run or Reject in the editor`);
  }
  const goal = status.goal === 'maximize' ? 'higher is better' : 'lower is better';
  lines.push('', `**${status.metric ?? 'metric'}** (${goal})`);
  lines.push('', `best: ${formatMetric(status.best)}${status.bestId !== null && status.bestId !== undefined ? ` (exp ${status.bestId})` : ''}`);
  lines.push('', `baseline: ${formatMetric(status.baseline)}`);
  const gain = formatGain(status.gainPercent, status.goal);
  if (gain) {
    lines.push('', `gain over the baseline: ${gain}`);
  }
  lines.push('', `kept ${status.kept ?? 0} of ${status.total ?? 0} finished, ${status.crashed ?? 0} crashed`);
  const cost = formatCost(status.costUsd);
  if (cost !== '—') {
    lines.push('', `agent cost: ${cost}`);
  }
  lines.push('', 'Click to open the experiments view.');
  return lines.join('\n');
}

function escapeMarkdown(text: string): string {
  return text.replace(/([\\`*_{}[\]()#+\-!|<>])/g, '\\$1');
}

/** A new best worth a notification: the best experiment changed to one not seen before. */
export function newBest(previous: LoopStatus | undefined, current: LoopStatus): boolean {
  if (!previous || current.bestId === null || current.bestId === undefined) {
    return false;
  }
  if (current.bestId === previous.bestId) {
    return false;
  }
  // The baseline (the first kept experiment) is not news, nor a revert that made it worse.
  if (previous.bestId === null || previous.bestId === undefined || current.bestId < previous.bestId) {
    return false;
  }
  if (typeof previous.best !== 'number' || typeof current.best !== 'number') {
    return true;
  }
  return current.goal === 'maximize' ? current.best > previous.best : current.best < previous.best;
}
