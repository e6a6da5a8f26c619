import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatClock, formatCost, formatDeltaPercent, formatDuration, formatGain, formatMetric } from '../src/logic/format';

test('metrics keep five significant digits without trailing zeros', () => {
  assert.equal(formatMetric(0.9932), '0.9932');
  assert.equal(formatMetric(0.99321987), '0.99322');
  assert.equal(formatMetric(61.234), '61.234');
  assert.equal(formatMetric(0.04), '0.04');
  assert.equal(formatMetric(12000), '12000');
  assert.equal(formatMetric(0), '0');
  assert.equal(formatMetric(null), '—');
  assert.equal(formatMetric(Number.NaN), '—');
  assert.equal(formatMetric(3.2e-7), '3.2e-7');
});

test('clocks and durations', () => {
  assert.equal(formatClock(133), '2:13');
  assert.equal(formatClock(300), '5:00');
  assert.equal(formatClock(5.9), '0:05');
  assert.equal(formatClock(3723), '1:02:03');
  assert.equal(formatClock(undefined), '0:00');
  assert.equal(formatDuration(1.234), '1.2s');
  assert.equal(formatDuration(42.4), '42s');
  assert.equal(formatDuration(133), '2:13');
  assert.equal(formatDuration(0), '—');
});

test('gain arrows follow the metric, not the sign of the gain', () => {
  assert.equal(formatGain(0.47, 'minimize'), '↓0.47%');
  assert.equal(formatGain(2.1, 'maximize'), '↑2.10%');
  assert.equal(formatGain(-1, 'minimize'), '↑1.00%');
  assert.equal(formatGain(null, 'minimize'), '');
  assert.equal(formatGain(12.345, 'minimize'), '↓12.3%');
});

test('cost and deltas', () => {
  assert.equal(formatCost(0), '—');
  assert.equal(formatCost(0.0042), '$0.0042');
  assert.equal(formatCost(1.5), '$1.50');
  assert.equal(formatDeltaPercent(-0.4712), '−0.47%');
  assert.equal(formatDeltaPercent(1.2), '+1.20%');
  assert.equal(formatDeltaPercent(0), '±0.00%');
});
