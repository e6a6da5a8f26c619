// Rows of the experiments table and the series of its chart, from `ratchet.experiments`.

import { formatCost, formatDeltaPercent, formatDuration, formatMetric, lowerIsBetter } from './format';
import type { ExperimentRecord } from './protocol';

export interface StatusLook {
  /** A codicon name (the webview loads no icon font: it maps these to characters). */
  icon: string;
  symbol: string;
  label: string;
  tone: 'good' | 'neutral' | 'bad' | 'active' | 'waiting';
}

const LOOKS: Record<string, StatusLook> = {
  kept: { icon: 'check', symbol: '✓', label: 'kept', tone: 'good' },
  discarded: { icon: 'close', symbol: '✗', label: 'discarded', tone: 'neutral' },
  crashed: { icon: 'error', symbol: '⚠', label: 'crashed', tone: 'bad' },
  timeout: { icon: 'watch', symbol: '⏱', label: 'timeout', tone: 'bad' },
  invalid: { icon: 'circle-slash', symbol: '⊘', label: 'invalid', tone: 'bad' },
  voided: { icon: 'lock', symbol: '⊗', label: 'voided', tone: 'bad' },
  interrupted: { icon: 'debug-stop', symbol: '■', label: 'interrupted', tone: 'neutral' },
  aborted: { icon: 'debug-stop', symbol: '■', label: 'aborted', tone: 'neutral' },
  lost: { icon: 'question', symbol: '?', label: 'lost', tone: 'bad' },
  rejected: { icon: 'thumbsdown', symbol: '↩', label: 'rejected', tone: 'neutral' },
  running: { icon: 'sync', symbol: '⟳', label: 'running', tone: 'active' },
  measured: { icon: 'sync', symbol: '⟳', label: 'measuring', tone: 'active' },
  proposed: { icon: 'lightbulb', symbol: '…', label: 'proposed', tone: 'active' },
  awaiting_review: { icon: 'eye', symbol: '◉', label: 'awaiting review', tone: 'waiting' },
};

export function statusLook(status: string): StatusLook {
  return LOOKS[status] ?? { icon: 'circle-outline', symbol: '·', label: status, tone: 'neutral' };
}

export interface TableRow {
  id: number;
  status: string;
  icon: string;
  symbol: string;
  statusLabel: string;
  tone: StatusLook['tone'];
  metric: string;
  /** Against the best at the time the experiment started; '' when there was none. */
  delta: string;
  deltaTone: 'better' | 'worse' | 'same' | '';
  description: string;
  reason: string;
  /** The holdout's number ('' where none was measured): shown beside the metric. */
  holdout: string;
  /** What a person weighs it by beside its reason (`evidenceLines`). */
  evidence: string[];
  duration: string;
  cost: string;
  kept: boolean;
  isBest: boolean;
  /** The metric as a number, for the chart (null: none). */
  value: number | null;
  /** The running best after this experiment (the chart's step line). */
  bestAfter: number | null;
  /** The best measured again beside it (a control), for the chart: the machine moving. */
  control: number | null;
  /** What can be done to it now: the view's buttons and the tree's inline actions. */
  actions: RowAction[];
}

export type RowAction = 'accept' | 'reject' | 'stop' | 'apply' | 'revert' | 'diff' | 'log';

/** What a person can do to one experiment in its state (the server decides in the end). */
export function rowActions(exp: ExperimentRecord): RowAction[] {
  const out: RowAction[] = [];
  if (exp.status === 'awaiting_review') {
    out.push('accept', 'reject');
  }
  if (exp.status === 'running' || exp.status === 'measured') {
    out.push('stop');
  }
  if (exp.commit && (exp.status === 'kept' || exp.status === 'discarded')) {
    out.push('apply');
  }
  if (exp.status === 'kept' && exp.source !== 'baseline' && exp.id !== 0) {
    out.push('revert');
  }
  if (exp.commit || exp.diff || exp.status === 'awaiting_review') {
    out.push('diff');
  }
  if (!['proposed', 'awaiting_review', 'rejected'].includes(exp.status)) {
    out.push('log');
  }
  return out;
}

/** The tree item's contextValue: words the menus' `viewItem =~ /\bword\b/` clauses match. */
export function contextValue(exp: ExperimentRecord): string {
  const words = rowActions(exp).map((a) => ({ accept: 'awaiting', reject: 'awaiting', stop: 'running', apply: 'applicable', revert: 'revertible', diff: 'hasDiff', log: 'hasLog' })[a]);
  return ['experiment', ...new Set(words)].join(' ');
}

/** The running best after each experiment, in id order (the order they were numbered in). */
function runningBest(sorted: ExperimentRecord[], goal: string | undefined): (number | null)[] {
  const lower = lowerIsBetter(goal);
  const out: (number | null)[] = [];
  let best: number | null = null;
  for (const exp of sorted) {
    if (exp.status === 'kept' && typeof exp.metric === 'number') {
      // The loop keeps only improvements, except a revert a person asked for: the branch's
      // best is then that experiment's value, better or not.
      if (best === null || exp.source === 'revert' || (lower ? exp.metric < best : exp.metric > best)) {
        best = exp.metric;
      }
    }
    out.push(best);
  }
  return out;
}

/** The best metric before each experiment started. */
export function bestBefore(experiments: ExperimentRecord[], goal: string | undefined): Map<number, number | null> {
  const sorted = [...experiments].sort((a, b) => a.id - b.id);
  const after = runningBest(sorted, goal);
  return new Map(sorted.map((exp, i) => [exp.id, i > 0 ? after[i - 1] : null]));
}

/** Beside an experiment's reason: its holdout beside its dev number, and (once its full row
 * came) what it fixed and broke, case by case, in the server's words (as `ratchet show`). */
export function evidenceLines(exp: ExperimentRecord, metric = 'metric'): string[] {
  const out: string[] = [];
  if (typeof exp.holdout === 'number' && Number.isFinite(exp.holdout)) {
    out.push(`holdout ${formatMetric(exp.holdout)} beside ${metric} ${formatMetric(exp.metric ?? null)}`);
  }
  const cases = exp.cases;
  if (cases && typeof cases === 'object' && typeof cases.words === 'string' && cases.words) {
    out.push(`cases${typeof cases.against === 'number' ? ` against exp ${cases.against}` : ''}: ${cases.words}`);
  }
  return out;
}

export function tableRows(experiments: ExperimentRecord[], goal: string | undefined, metric = 'metric'): TableRow[] {
  const lower = lowerIsBetter(goal);
  const sorted = [...experiments].sort((a, b) => a.id - b.id);
  const after = runningBest(sorted, goal);
  const before = new Map(sorted.map((exp, i) => [exp.id, i > 0 ? after[i - 1] : null]));
  const bestId = currentBestId(experiments);
  return sorted
    .map((exp, index) => {
      const look = statusLook(exp.status);
      const reference = before.get(exp.id) ?? null;
      let delta = '';
      let deltaTone: TableRow['deltaTone'] = '';
      if (typeof exp.metric === 'number' && reference !== null) {
        const relative = reference === 0 ? null : (100 * (exp.metric - reference)) / Math.abs(reference);
        delta = relative === null ? `${exp.metric - reference >= 0 ? '+' : ''}${formatMetric(exp.metric - reference)}` : formatDeltaPercent(relative);
        const better = lower ? exp.metric < reference : exp.metric > reference;
        deltaTone = exp.metric === reference ? 'same' : better ? 'better' : 'worse';
      }
      return {
        id: exp.id,
        status: exp.status,
        icon: look.icon,
        symbol: look.symbol,
        statusLabel: look.label,
        tone: look.tone,
        metric: formatMetric(exp.metric ?? null),
        delta,
        deltaTone,
        description: exp.description ?? '',
        reason: exp.reason ?? '',
        holdout: typeof exp.holdout === 'number' && Number.isFinite(exp.holdout) ? formatMetric(exp.holdout) : '',
        evidence: evidenceLines(exp, metric),
        duration: formatDuration(exp.run_s),
        cost: formatCost(exp.cost_usd),
        kept: exp.status === 'kept',
        isBest: exp.id === bestId,
        value: typeof exp.metric === 'number' && Number.isFinite(exp.metric) ? exp.metric : null,
        bestAfter: after[index],
        control: typeof exp.control === 'number' && Number.isFinite(exp.control) ? exp.control : null,
        actions: rowActions(exp),
      };
    });
}

/** The loop's best is its last kept experiment (the branch's tip). */
export function currentBestId(experiments: ExperimentRecord[]): number | null {
  let best: ExperimentRecord | null = null;
  for (const exp of experiments) {
    if (exp.status === 'kept' && (best === null || exp.id > best.id)) {
      best = exp;
    }
  }
  return best ? best.id : null;
}

export interface ChartData {
  /** Experiment ids. */
  x: number[];
  /** Every measured experiment's metric (null: none). */
  all: (number | null)[];
  /** Kept experiments' metric, null elsewhere: drawn highlighted. */
  kept: (number | null)[];
  /** The running best after each experiment: drawn as a step line. */
  best: (number | null)[];
  metric: string;
  goal: string;
}

export function chartData(experiments: ExperimentRecord[], metric: string, goal: string | undefined): ChartData {
  const sorted = [...experiments].sort((a, b) => a.id - b.id);
  const value = (exp: ExperimentRecord) =>
    typeof exp.metric === 'number' && Number.isFinite(exp.metric) ? exp.metric : null;
  return {
    x: sorted.map((exp) => exp.id),
    all: sorted.map(value),
    kept: sorted.map((exp) => (exp.status === 'kept' ? value(exp) : null)),
    best: runningBest(sorted, goal),
    metric,
    goal: goal ?? 'minimize',
  };
}
