// A small, dependency-free HTML writer for the reports: one self-contained page (inline CSS, plots
// as SVG data URIs, no scripts, no external assets), readable offline and attachable anywhere.
import { basename } from 'node:path';
import type { PlotFiles } from '../plots/render.js';

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

/** A table cell: text (escaped) or pre-built HTML. */
export type Cell = string | number | { html: string };

function cell(c: Cell): string {
  return typeof c === 'object' ? c.html : escapeHtml(String(c));
}

/** An HTML table; columns whose header is in `numeric` are right-aligned. */
export function htmlTable(header: readonly string[], rows: readonly (readonly Cell[])[], numeric: ReadonlySet<string> = new Set()): string {
  const cls = (h: string) => (numeric.has(h) ? ' class="num"' : '');
  return [
    '<table>',
    `<thead><tr>${header.map((h) => `<th${cls(h)}>${escapeHtml(h)}</th>`).join('')}</tr></thead>`,
    '<tbody>',
    ...rows.map((r) => `<tr>${r.map((c, i) => `<td${cls(header[i] ?? '')}>${cell(c)}</td>`).join('')}</tr>`),
    '</tbody>',
    '</table>',
  ].join('\n');
}

/** A definition list of key/value pairs. */
export function htmlFacts(facts: readonly [string, Cell][]): string {
  return `<dl class="facts">${facts.map(([k, v]) => `<dt>${escapeHtml(k)}</dt><dd>${cell(v)}</dd>`).join('')}</dl>`;
}

/** A plot as an inline SVG data URI, with links to its SVG and PNG files next to the page. */
export function htmlFigure(plot: PlotFiles, caption: string): string {
  const uri = `data:image/svg+xml;base64,${Buffer.from(plot.svg, 'utf8').toString('base64')}`;
  const svg = escapeHtml(basename(plot.svgPath));
  const png = escapeHtml(basename(plot.pngPath));
  return (
    `<figure id="plot-${escapeHtml(plot.name)}"><img alt="${escapeHtml(caption)}" src="${uri}">` +
    `<figcaption>${escapeHtml(caption)} (<a href="${svg}">SVG</a>, <a href="${png}">PNG</a>)</figcaption></figure>`
  );
}

const STYLE = `
body { font-family: system-ui, -apple-system, 'Segoe UI', 'DejaVu Sans', sans-serif; margin: 2rem auto; max-width: 980px; padding: 0 1rem; color: #222; }
h1 { font-size: 1.5rem; margin-bottom: 0.2rem; } h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
.sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; font-size: 0.9rem; margin: 0.5rem 0; }
th, td { border-bottom: 1px solid #e5e5e5; padding: 0.25rem 0.6rem; text-align: left; white-space: nowrap; }
th { background: #f6f6f6; } td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.best td { font-weight: 600; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 0.2rem 1rem; font-size: 0.9rem; }
dl.facts dt { color: #666; } dl.facts dd { margin: 0; font-variant-numeric: tabular-nums; }
figure { margin: 1rem 0; } figure img { max-width: 100%; height: auto; } figcaption { color: #666; font-size: 0.85rem; }
pre { background: #f6f6f6; padding: 0.8rem; overflow-x: auto; font-size: 0.8rem; }
.note { color: #8a6d3b; background: #fcf8e3; padding: 0.4rem 0.8rem; border-radius: 4px; }
footer { color: #888; font-size: 0.8rem; margin-top: 3rem; }
`;

export interface PageSection {
  title: string;
  html: string;
}

/** The whole page. */
export function htmlPage(title: string, subtitle: string, sections: readonly PageSection[]): string {
  return [
    '<!doctype html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>${escapeHtml(title)}</title>`,
    `<style>${STYLE}</style>`,
    '</head>',
    '<body>',
    `<h1>${escapeHtml(title)}</h1>`,
    `<p class="sub">${escapeHtml(subtitle)}</p>`,
    ...sections.map((s) => `<section>\n<h2>${escapeHtml(s.title)}</h2>\n${s.html}\n</section>`),
    `<footer>written by peer-train report on ${escapeHtml(new Date().toISOString())}</footer>`,
    '</body>',
    '</html>',
    '',
  ].join('\n');
}
