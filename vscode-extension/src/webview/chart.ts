// The chart: every experiment a dot, kept ones highlighted, the running best as a step line
// with the noise band around it, the best measured again beside a candidate (its control) as an
// orange mark, and a readout of the point under the cursor. Colours come
// from the theme's CSS variables and are read again when the theme changes.

import uPlot from 'uplot';
import type { TableRow } from '../logic/table';

function css(name: string, fallback: string): string {
  return getComputedStyle(document.body).getPropertyValue(name).trim() || fallback;
}

export class Chart {
  private plot: uPlot | null = null;
  private key = '';
  private rows: TableRow[] = [];
  private metric = 'metric';
  private goal = 'minimize';
  private noise: number | null = null;

  constructor(
    private readonly host: HTMLElement,
    private readonly readout: HTMLElement,
    private readonly onPick: (id: number) => void,
  ) {}

  /** Rebuilds on the next draw (a theme change, a resize). */
  invalidate(): void {
    this.key = '';
    this.draw();
  }

  update(rows: TableRow[], metric: string, goal: string, noise: number | null): void {
    this.rows = rows;
    this.metric = metric;
    this.goal = goal;
    this.noise = noise;
    this.draw();
  }

  private data(): uPlot.AlignedData {
    const x = this.rows.map((r) => r.id);
    const best = this.rows.map((r) => r.bestAfter);
    const noise = this.noise ?? 0;
    return [
      x,
      this.rows.map((r) => r.value),
      this.rows.map((r) => (r.kept ? r.value : null)),
      best,
      best.map((b) => (b === null || !noise ? null : b + noise)),
      best.map((b) => (b === null || !noise ? null : b - noise)),
      this.rows.map((r) => r.control),
    ];
  }

  private draw(): void {
    const measured = this.rows.filter((r) => r.value !== null);
    this.host.dataset.points = String(measured.length);
    this.host.dataset.kept = String(this.rows.filter((r) => r.kept && r.value !== null).length);
    this.host.dataset.experiments = String(this.rows.length);
    this.host.dataset.noise = this.noise === null ? '' : String(this.noise);
    this.host.dataset.controls = String(this.rows.filter((r) => r.control !== null).length);
    const width = Math.max(240, this.host.clientWidth || document.body.clientWidth - 32);
    const key = `${this.metric}|${this.goal}|${width}|${this.noise !== null}`;
    if (this.plot && key === this.key) {
      this.plot.setData(this.data());
      return;
    }
    this.plot?.destroy();
    this.key = key;
    this.plot = new uPlot(this.options(width), this.data(), this.host);
    this.host.dataset.builds = String(Number(this.host.dataset.builds ?? 0) + 1);
    this.host.dataset.bestColor = css('--vscode-charts-blue', '#3794ff');
    this.plot.over.addEventListener('click', () => {
      const idx = this.plot?.cursor.idx;
      const row = idx === null || idx === undefined ? undefined : this.rows[idx];
      if (row) {
        this.onPick(row.id);
      }
    });
  }

  private options(width: number): uPlot.Options {
    const fg = css('--vscode-foreground', '#ccc');
    const grid = css('--vscode-editorWidget-border', 'rgba(128,128,128,0.25)');
    const muted = css('--vscode-descriptionForeground', '#888');
    const green = css('--vscode-charts-green', '#89d185');
    const blue = css('--vscode-charts-blue', '#3794ff');
    const orange = css('--vscode-charts-orange', '#d18616');
    const axis = { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
    const none = { show: false };
    return {
      width,
      height: 240,
      legend: { show: false },
      cursor: { drag: { x: false, y: false }, points: { size: 8 } },
      scales: { x: { time: false } },
      axes: [
        { ...axis, label: 'experiment', labelSize: 18, incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000] },
        { ...axis, label: `${this.metric} (${this.goal === 'maximize' ? 'higher' : 'lower'} is better)`, labelSize: 18, size: 64 },
      ],
      series: [
        { label: 'experiment' },
        { label: 'measured', stroke: muted, width: 0, paths: () => null, points: { show: true, size: 6, stroke: muted, fill: muted } },
        { label: 'kept', stroke: green, width: 0, paths: () => null, points: { show: true, size: 10, stroke: green, fill: green } },
        { label: 'best', stroke: blue, width: 2, spanGaps: true, paths: uPlot.paths.stepped!({ align: 1 }), points: none },
        { label: 'noise+', stroke: 'transparent', width: 0, spanGaps: true, paths: uPlot.paths.stepped!({ align: 1 }), points: none },
        { label: 'noise-', stroke: 'transparent', width: 0, spanGaps: true, paths: uPlot.paths.stepped!({ align: 1 }), points: none },
        { label: 'control', stroke: orange, width: 0, paths: () => null, points: { show: true, size: 7, stroke: orange, fill: 'transparent', width: 2 } },
      ],
      bands: this.noise ? [{ series: [4, 5], fill: `${blue}33` }] : [],
      hooks: { setCursor: [(u) => this.showReadout(u.cursor.idx)] },
    };
  }

  private showReadout(idx: number | null | undefined): void {
    const row = idx === null || idx === undefined ? undefined : this.rows[idx];
    if (!row) {
      this.readout.textContent = '';
      return;
    }
    const best = row.bestAfter === null ? '' : ` · best after it ${row.bestAfter.toPrecision(5).replace(/\.?0+$/, '')}`;
    const noise = this.noise ? ` (noise ±${this.noise.toPrecision(2)})` : '';
    const control = row.control === null ? '' : ` · the best beside it ${row.control.toPrecision(5).replace(/\.?0+$/, '')}`;
    this.readout.textContent = `exp ${row.id} · ${row.statusLabel} · ${this.metric} ${row.metric}${row.delta ? ` (${row.delta})` : ''}${best}${control}${noise} · ${row.description}`;
  }
}
