// Number, time and money formatting shared by the status bar, the table and the chart.

/** A metric value with up to five significant digits, without trailing zeros. */
export function formatMetric(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) {
    return '—';
  }
  if (value === 0) {
    return '0';
  }
  const magnitude = Math.abs(value);
  if (magnitude >= 1e6 || magnitude < 1e-4) {
    return value.toExponential(3).replace(/\.?0+e/, 'e');
  }
  const text = value.toPrecision(5);
  return text.includes('.') ? text.replace(/\.?0+$/, '') : text;
}

/** Seconds as a clock: `2:13`, `1:02:03`. */
export function formatClock(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds) || seconds < 0) {
    return '0:00';
  }
  const total = Math.floor(seconds);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const mm = h > 0 ? String(m).padStart(2, '0') : String(m);
  return `${h > 0 ? `${h}:` : ''}${mm}:${String(s).padStart(2, '0')}`;
}

/** A duration for tables: `0.8s`, `12s`, `2:13`. */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds) || seconds <= 0) {
    return '—';
  }
  if (seconds < 10) {
    return `${seconds.toFixed(1)}s`;
  }
  if (seconds < 60) {
    return `${Math.round(seconds)}s`;
  }
  return formatClock(seconds);
}

export function formatCost(usd: number | null | undefined): string {
  if (usd === null || usd === undefined || !Number.isFinite(usd) || usd <= 0) {
    return '—';
  }
  return usd < 0.01 ? `$${usd.toFixed(4)}` : `$${usd.toFixed(2)}`;
}

export type Goal = 'minimize' | 'maximize';

export function lowerIsBetter(goal: string | undefined): boolean {
  return goal !== 'maximize';
}

/**
 * The gain over the baseline, `↓0.47%` when lower is better (the metric went down), `↑2.1%`
 * when higher is better. `gainPercent` is positive for an improvement (the engine's sign).
 */
export function formatGain(gainPercent: number | null | undefined, goal: string | undefined): string {
  if (gainPercent === null || gainPercent === undefined || !Number.isFinite(gainPercent)) {
    return '';
  }
  const wentDown = lowerIsBetter(goal) ? gainPercent >= 0 : gainPercent < 0;
  const arrow = wentDown ? '↓' : '↑';
  return `${arrow}${formatPercent(Math.abs(gainPercent))}`;
}

export function formatPercent(value: number): string {
  const magnitude = Math.round(Math.abs(value) * 100) / 100;
  const digits = magnitude >= 100 ? 0 : magnitude >= 10 ? 1 : 2;
  return `${value.toFixed(digits)}%`;
}

/** A signed relative change, `-0.47%`, `+1.2%`. */
export function formatDeltaPercent(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) {
    return '';
  }
  const sign = value > 0 ? '+' : value < 0 ? '−' : '±';
  return `${sign}${formatPercent(Math.abs(value))}`;
}
