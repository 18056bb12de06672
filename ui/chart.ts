/** A small SVG line chart: a few series over the canary's looks, scaled to their own maximum. */
const SVG = 'http://www.w3.org/2000/svg';

export interface Series {
  label: string;
  cls: string;
  values: (number | undefined)[];
}

function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string>): SVGElementTagNameMap[K] {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

export function lineChart(title: string, series: Series[], format: (v: number) => string, guide?: { value: number; label: string }): HTMLElement {
  const W = 320;
  const H = 120;
  const PAD = 6;
  const n = Math.max(2, ...series.map((s) => s.values.length));
  const all = series.flatMap((s) => s.values.filter((v): v is number => v !== undefined && Number.isFinite(v)));
  const max = Math.max(guide?.value ?? 0, ...all, 1e-9) * 1.1;
  const x = (i: number): number => PAD + (i * (W - 2 * PAD)) / (n - 1);
  const y = (v: number): number => H - PAD - (v / max) * (H - 2 * PAD);
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': title });
  if (guide !== undefined) {
    root.appendChild(svg('line', { x1: String(PAD), x2: String(W - PAD), y1: String(y(guide.value)), y2: String(y(guide.value)), class: 'guide' }));
  }
  for (const s of series) {
    const points = s.values.flatMap((v, i) => (v === undefined || !Number.isFinite(v) ? [] : [`${x(i).toFixed(1)},${y(v).toFixed(1)}`]));
    if (points.length === 0) continue;
    root.appendChild(svg('polyline', { points: points.join(' '), class: `line ${s.cls}` }));
    const last = points[points.length - 1]!.split(',');
    root.appendChild(svg('circle', { cx: last[0]!, cy: last[1]!, r: '3', class: `dot ${s.cls}` }));
  }
  const figure = document.createElement('figure');
  const caption = document.createElement('figcaption');
  caption.textContent = title;
  figure.append(caption, root);
  const legend = document.createElement('ul');
  legend.className = 'legend';
  for (const s of series) {
    const last = [...s.values].reverse().find((v) => v !== undefined && Number.isFinite(v));
    const item = document.createElement('li');
    item.className = s.cls;
    item.textContent = `${s.label}: ${last === undefined ? '—' : format(last)}`;
    legend.appendChild(item);
  }
  if (guide !== undefined) {
    const item = document.createElement('li');
    item.className = 'guide';
    item.textContent = guide.label;
    legend.appendChild(item);
  }
  figure.appendChild(legend);
  return figure;
}
