import assert from 'node:assert/strict';
import { test } from 'node:test';
import { asExperimentList, idFrom, type ExperimentRecord } from '../src/logic/protocol';
import { bestBefore, chartData, currentBestId, evidenceLines, statusLook, tableRows } from '../src/logic/table';

const exps: ExperimentRecord[] = [
  { id: 0, status: 'kept', metric: 1.0, description: 'baseline', source: 'baseline', run_s: 1.2 },
  { id: 1, status: 'discarded', metric: 1.1, description: 'LR 0.5 -> 0.7', run_s: 1.3, cost_usd: 0.0021 },
  { id: 2, status: 'kept', metric: 0.9, description: 'LR 0.5 -> 0.4', run_s: 1.1 },
  { id: 3, status: 'crashed', metric: null, description: 'WIDTH 8 -> 0', run_s: 0.4, reason: 'crashed: exit code 1' },
  { id: 4, status: 'kept', metric: 0.85, description: 'WIDTH 8 -> 10', run_s: 75 },
  { id: 5, status: 'running', description: 'LR 0.4 -> 0.36' },
];

test('the best before each experiment, and the current best', () => {
  const before = bestBefore(exps, 'minimize');
  assert.deepEqual([...before.values()], [null, 1.0, 1.0, 0.9, 0.9, 0.85]);
  assert.equal(currentBestId(exps), 4);
});

test('rows: icon, metric, delta against the best at the time, duration, cost', () => {
  const rows = tableRows([...exps].reverse(), 'minimize');
  assert.deepEqual(rows.map((r) => r.id), [0, 1, 2, 3, 4, 5]);
  const [baseline, discarded, kept, crashed, best, running] = rows;
  assert.equal(baseline.symbol, '✓');
  assert.equal(baseline.delta, '');
  assert.equal(discarded.delta, '+10.0%');
  assert.equal(discarded.deltaTone, 'worse');
  assert.equal(discarded.cost, '$0.0021');
  assert.equal(kept.delta, '−10.0%');
  assert.equal(kept.deltaTone, 'better');
  assert.equal(crashed.metric, '—');
  assert.equal(crashed.tone, 'bad');
  assert.equal(crashed.reason, 'crashed: exit code 1');
  assert.equal(best.isBest, true);
  assert.equal(best.duration, '1:15');
  assert.equal(best.delta, '−5.56%');
  assert.equal(running.statusLabel, 'running');
  assert.equal(running.tone, 'active');
  assert.equal(rows.filter((r) => r.isBest).length, 1);
});

test('maximize flips which way is better', () => {
  const rows = tableRows(exps.slice(0, 3), 'maximize');
  assert.equal(rows[1].deltaTone, 'better');
});

test('chart: every experiment a point, kept ones highlighted, best as steps', () => {
  const chart = chartData(exps, 'score', 'minimize');
  assert.deepEqual(chart.x, [0, 1, 2, 3, 4, 5]);
  assert.deepEqual(chart.all, [1.0, 1.1, 0.9, null, 0.85, null]);
  assert.deepEqual(chart.kept, [1.0, null, 0.9, null, 0.85, null]);
  assert.deepEqual(chart.best, [1.0, 1.0, 0.9, 0.9, 0.85, 0.85]);
});

test('a revert moves the best even when it is worse', () => {
  const withRevert = [...exps.slice(0, 5), { id: 5, status: 'kept', metric: 0.9, source: 'revert', description: 'revert exp 4' }];
  assert.deepEqual(chartData(withRevert, 'score', 'minimize').best, [1.0, 1.0, 0.9, 0.9, 0.85, 0.9]);
});

test('unknown statuses and odd payloads do not break the table', () => {
  assert.equal(statusLook('something_new').label, 'something_new');
  assert.deepEqual(asExperimentList({ experiments: [{ id: 1, status: 'kept' }, { nope: true }] }).map((e) => e.id), [1]);
  assert.deepEqual(asExperimentList(null), []);
});

test('experiment ids from command arguments (code actions, lenses, the palette)', () => {
  assert.equal(idFrom(14), 14);
  assert.equal(idFrom('14'), 14);
  assert.equal(idFrom('best'), 'best');
  assert.equal(idFrom({ experiment: 3 }), 3);
  assert.equal(idFrom({ id: 4 }), 4);
  assert.equal(idFrom(undefined), undefined);
  assert.equal(idFrom('x'), undefined);
  assert.equal(idFrom(1.5), undefined);
});

test("rows carry the best's level measured beside a candidate (its control) for the chart", () => {
  const controlled: ExperimentRecord[] = [
    { id: 0, status: 'kept', metric: 1.0, source: 'baseline' },
    { id: 1, status: 'discarded', metric: 0.97, control: 0.96 },
    { id: 2, status: 'discarded', metric: 0.95, control: Number.NaN },
  ];
  const rows = tableRows(controlled, 'minimize');
  assert.deepEqual(rows.map((r) => r.control), [null, 0.96, null]);
});

test('a row shows its holdout beside the metric, and what it fixed and broke once its full row came', () => {
  const words = 'fixed 7 (c10, c11, c12, c13, c14, c15, c16), broke 1 (c03) of 40 cases';
  const rows = tableRows(
    [
      { id: 0, status: 'kept', metric: 0.38333, holdout: 0.35, source: 'baseline' },
      { id: 1, status: 'kept', metric: 0.55, holdout: 1.05, reason: 'kept: +0.157', cases: { against: 0, fixed: 7, broken: 1, common: 40, words } },
      { id: 2, status: 'discarded', metric: 0.5, holdout: null, cases: null },
    ],
    'maximize',
    'score',
  );
  assert.deepEqual(rows.map((r) => r.holdout), ['0.35', '1.05', '']);
  assert.deepEqual(rows[0].evidence, ['holdout 0.35 beside score 0.38333']);
  assert.deepEqual(rows[1].evidence, ['holdout 1.05 beside score 0.55', `cases against exp 0: ${words}`]);
  assert.deepEqual(rows[2].evidence, []);
  // an odd payload from another server shows nothing rather than "undefined"
  assert.deepEqual(evidenceLines({ id: 3, status: 'kept', holdout: Number.NaN, cases: { fixed: 1 } }), []);
  assert.deepEqual(evidenceLines({ id: 4, status: 'kept', cases: { words: 'fixed 1, broke 0 of 2 cases' } }), ['cases: fixed 1, broke 0 of 2 cases']);
});
