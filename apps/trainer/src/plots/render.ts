// Plots without a browser: a vega-lite spec is compiled to vega, rendered headless to an SVG string
// (a vega View with renderer 'none', whose toSVG() needs no canvas), and rasterized to PNG by resvg
// (a native SVG renderer; no browser, no canvas package). vega and vega-lite are loaded on first use
// so that commands which draw nothing (train, eval) do not pay for them at startup.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TopLevelSpec } from 'vega-lite';

/** Rendered plot files. */
export interface PlotFiles {
  /** Base name, e.g. `loss` for loss.svg and loss.png. */
  name: string;
  svg: string;
  png: Buffer;
  svgPath: string;
  pngPath: string;
}

/** Width and height of the plots' drawing area in CSS pixels (axes and legends come on top). */
export const PLOT_SIZE = { width: 560, height: 280 } as const;

/** Fonts resvg finds on most systems; vega only estimates text widths, so any sans-serif fits. */
const FONT = 'DejaVu Sans, Liberation Sans, Arial, Helvetica, sans-serif';

/** Shared look: white background (PNGs are viewed outside the page too), one font everywhere. */
export function withDefaults(spec: TopLevelSpec): TopLevelSpec {
  const config = {
    font: FONT,
    background: 'white',
    view: { stroke: '#ddd' },
    axis: { labelFontSize: 11, titleFontSize: 12, gridColor: '#eee' },
    legend: { labelFontSize: 11, titleFontSize: 12 },
    title: { fontSize: 14, anchor: 'start' as const },
    ...((spec as { config?: object }).config ?? {}),
  };
  return { $schema: 'https://vega.github.io/schema/vega-lite/v6.json', ...spec, config } as TopLevelSpec;
}

/** The SVG of a vega-lite spec, rendered headless. */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const [vega, vegaLite] = await Promise.all([import('vega'), import('vega-lite')]);
  const compiled = vegaLite.compile(withDefaults(spec)).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** Rasterizes an SVG to PNG at `scale` times its size (2: sharp on high-density screens). */
export async function svgToPng(svg: string, scale = 2): Promise<Buffer> {
  const { Resvg } = await import('@resvg/resvg-js');
  const rendered = new Resvg(svg, {
    fitTo: { mode: 'zoom', value: scale },
    background: 'white',
    font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans' },
  }).render();
  return Buffer.from(rendered.asPng());
}

/** Renders `spec` and writes `<dir>/<name>.svg` and `<dir>/<name>.png`. */
export async function writePlot(dir: string, name: string, spec: TopLevelSpec): Promise<PlotFiles> {
  const svg = await renderSvg(spec);
  const png = await svgToPng(svg);
  const svgPath = join(dir, `${name}.svg`);
  const pngPath = join(dir, `${name}.png`);
  writeFileSync(svgPath, svg);
  writeFileSync(pngPath, png);
  return { name, svg, png, svgPath, pngPath };
}
