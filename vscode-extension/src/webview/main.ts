// The experiments view's script (runs in the webview): patches the grid and the chart with
// the rows the extension sends, keeps the selection in the webview's state (a reload brings
// it back), and follows theme changes.

import 'uplot/dist/uPlot.min.css';
import './style.css';
import type { ToView, ViewHeader } from '../experimentsView';
import { applyPatch } from '../logic/viewPatch';
import type { TableRow } from '../logic/table';
import { Chart } from './chart';
import { Grid } from './grid';

declare function acquireVsCodeApi(): { postMessage(message: unknown): void; getState(): unknown; setState(state: unknown): void };

const vscode = acquireVsCodeApi();
const $ = (id: string) => document.getElementById(id) as HTMLElement;
const rows = new Map<number, TableRow>();
let header: ViewHeader | null = null;

const saved = (vscode.getState() ?? {}) as { selected?: number | null };
const grid = new Grid($('experiments') as HTMLTableElement, document.querySelector('#experiments tbody') as HTMLElement, {
  open: (id) => {
    vscode.setState({ selected: id });
    vscode.postMessage({ type: 'open', id });
  },
  log: (id) => vscode.postMessage({ type: 'log', id }),
  action: (command, id) => vscode.postMessage({ type: 'command', command, id }),
});
grid.selected = saved.selected ?? null;
const chart = new Chart($('chart'), $('readout'), (id) => {
  grid.select(id, true);
  vscode.setState({ selected: id });
  vscode.postMessage({ type: 'open', id });
});

function renderHeader(h: ViewHeader): void {
  $('project').textContent = h.project ? `— ${h.project}` : '';
  $('summary').textContent = h.summary;
  $('metric-head').textContent = h.metric;
  const banner = $('banner');
  banner.hidden = !h.offline;
  banner.textContent = h.offline ? `Offline: ${h.offline}. The table shows what was known last.` : '';
  document.body.classList.toggle('offline', !!h.offline);
  document.body.dataset.offline = h.offline ? 'true' : 'false';
  for (const button of Array.from(document.querySelectorAll<HTMLButtonElement>('button[data-command]'))) {
    const name = button.dataset.command!.replace('ratchet.', '') as keyof ViewHeader['buttons'];
    button.disabled = !h.buttons[name];
  }
  $('legend-noise').hidden = h.noise === null;
}

function onPatch(message: Extract<ToView, { type: 'patch' }>): void {
  header = message.header;
  const { removed } = applyPatch(rows, message.patch);
  for (const id of removed) {
    grid.remove(id);
  }
  for (const row of message.patch.upsert) {
    grid.upsert(row, header.running[row.id]);
  }
  grid.tick(header.running);
  grid.finish();
  renderHeader(header);
  $('empty').style.display = rows.size ? 'none' : 'block';
  document.body.dataset.rows = String(rows.size);
  document.body.dataset.patches = String(Number(document.body.dataset.patches ?? 0) + 1);
  document.body.dataset.lastUpsert = String(message.patch.upsert.length);
  const sorted = [...rows.values()].sort((a, b) => a.id - b.id);
  $('legend-control').hidden = !sorted.some((row) => row.control !== null);
  chart.update(sorted, header.metric, header.goal, header.noise);
}

window.addEventListener('message', (event: MessageEvent<ToView>) => {
  const message = event.data;
  if (message?.type === 'patch') {
    onPatch(message);
  } else if (message?.type === 'theme') {
    chart.invalidate();
  } else if (message?.type === 'select') {
    grid.select(message.id, true);
  }
});

for (const button of Array.from(document.querySelectorAll<HTMLButtonElement>('button[data-command]'))) {
  button.addEventListener('click', () => vscode.postMessage({ type: 'command', command: button.dataset.command }));
}

// VS Code swaps the body's theme class and CSS variables on a theme change
new MutationObserver(() => chart.invalidate()).observe(document.body, { attributes: true, attributeFilter: ['class'] });
new ResizeObserver(() => chart.invalidate()).observe($('chart'));

vscode.postMessage({ type: 'ready' });
