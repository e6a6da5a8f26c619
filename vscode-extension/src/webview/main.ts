// The experiments view's script (runs in the webview): a table and a uPlot chart.

import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import './style.css';
import type { ViewMessage } from '../experimentsView';

declare function acquireVsCodeApi(): { postMessage(message: unknown): void; getState(): unknown; setState(state: unknown): void };

const vscode = acquireVsCodeApi();
const chartHost = document.getElementById('chart') as HTMLElement;
const tbody = document.querySelector('#experiments tbody') as HTMLElement;
const empty = document.getElementById('empty') as HTMLElement;
const summary = document.getElementById('summary') as HTMLElement;
const metricHead = document.getElementById('metric-head') as HTMLElement;
let plot: uPlot | null = null;
let plotKey = '';
let last: ViewMessage | null = null;
let selected: number | null = null;

function css(name: string, fallback: string): string {
  const value = getComputedStyle(document.body).getPropertyValue(name).trim();
  return value || fallback;
}

function select(id: number, open: boolean): void {
  selected = id;
  for (const row of Array.from(tbody.querySelectorAll('tr'))) {
    row.classList.toggle('selected', Number((row as HTMLElement).dataset.id) === id);
  }
  if (open) {
    vscode.postMessage({ type: 'open', id });
  }
}

function renderTable(message: ViewMessage): void {
  metricHead.textContent = message.metric;
  const fragment = document.createDocumentFragment();
  for (const row of [...message.rows].reverse()) {
    const tr = document.createElement('tr');
    tr.dataset.id = String(row.id);
    tr.dataset.status = row.status;
    tr.tabIndex = 0;
    tr.className = `tone-${row.tone}${row.isBest ? ' best' : ''}${row.id === selected ? ' selected' : ''}`;
    tr.title = row.reason || row.statusLabel;
    const cells: [string, string][] = [
      [String(row.id), 'num'],
      [`${row.symbol} ${row.statusLabel}${row.isBest ? ' ★' : ''}`, 'status'],
      [row.metric, 'num'],
      [row.delta, `num delta ${row.deltaTone}`],
      [row.description, 'description'],
      [message.running[row.id] ?? row.duration, 'num'],
      [row.cost, 'num'],
    ];
    for (const [text, cls] of cells) {
      const td = document.createElement('td');
      td.textContent = text;
      td.className = cls;
      tr.appendChild(td);
    }
    tr.addEventListener('click', () => select(row.id, true));
    tr.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' || event.key === ' ') {
        event.preventDefault();
        select(row.id, true);
      }
    });
    fragment.appendChild(tr);
  }
  tbody.replaceChildren(fragment);
  empty.style.display = message.rows.length ? 'none' : 'block';
}

function renderChart(message: ViewMessage): void {
  const { chart } = message;
  chartHost.dataset.points = String(chart.all.filter((v) => v !== null).length);
  chartHost.dataset.kept = String(chart.kept.filter((v) => v !== null).length);
  chartHost.dataset.experiments = String(chart.x.length);
  const width = Math.max(240, chartHost.clientWidth || document.body.clientWidth - 32);
  const height = 240;
  const data: uPlot.AlignedData = [chart.x, chart.all, chart.kept, chart.best];
  const key = `${chart.metric}|${chart.goal}|${width}`;
  if (plot && key === plotKey) {
    plot.setData(data);
    return;
  }
  plot?.destroy();
  plotKey = key;
  const fg = css('--vscode-foreground', '#ccc');
  const grid = css('--vscode-editorWidget-border', 'rgba(128,128,128,0.25)');
  const muted = css('--vscode-descriptionForeground', '#888');
  const green = css('--vscode-charts-green', '#89d185');
  const blue = css('--vscode-charts-blue', '#3794ff');
  const axis = { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
  const opts: uPlot.Options = {
    width,
    height,
    legend: { show: false },
    cursor: { drag: { x: false, y: false }, points: { size: 8 } },
    scales: { x: { time: false } },
    axes: [
      { ...axis, label: 'experiment', labelSize: 18, incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000] },
      { ...axis, label: `${chart.metric} (${chart.goal === 'maximize' ? 'higher' : 'lower'} is better)`, labelSize: 18, size: 64 },
    ],
    series: [
      { label: 'experiment' },
      { label: 'measured', stroke: muted, width: 0, paths: () => null, points: { show: true, size: 6, stroke: muted, fill: muted } },
      { label: 'kept', stroke: green, width: 0, paths: () => null, points: { show: true, size: 10, stroke: green, fill: green } },
      { label: 'best', stroke: blue, width: 2, spanGaps: true, paths: uPlot.paths.stepped!({ align: 1 }), points: { show: false } },
    ],
  };
  plot = new uPlot(opts, data, chartHost);
  plot.over.addEventListener('click', () => {
    const idx = plot?.cursor.idx;
    if (idx !== null && idx !== undefined && last) {
      const id = last.chart.x[idx];
      if (id !== undefined) {
        select(id, true);
      }
    }
  });
}

function render(message: ViewMessage): void {
  last = message;
  if (message.selected !== null && selected === null) {
    selected = message.selected;
  }
  summary.textContent = message.summary;
  renderTable(message);
  renderChart(message);
  document.body.dataset.rows = String(message.rows.length);
}

window.addEventListener('message', (event: MessageEvent<ViewMessage>) => {
  if (event.data?.type === 'data') {
    render(event.data);
  }
});

for (const button of Array.from(document.querySelectorAll('button[data-command]'))) {
  button.addEventListener('click', () => vscode.postMessage({ type: 'command', command: (button as HTMLElement).dataset.command }));
}

new ResizeObserver(() => {
  if (last) {
    plotKey = '';
    renderChart(last);
  }
}).observe(chartHost);

vscode.postMessage({ type: 'ready' });
