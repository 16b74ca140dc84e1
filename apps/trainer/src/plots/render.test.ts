// The plots are real images: SVGs holding the data they were given (point by point), PNGs that decode
// (signature, chunk CRCs, sizes, filters) to the SVG's size at 2x with the series colours in them.
import { Resvg } from '@resvg/resvg-js';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodePng, PNG_SIGNATURE, svgSize } from './png.test-util.js';
import { renderSvg, svgToPng, writePlot } from './render.js';
import { isoFlopSpec, lossCurveSpec, type IsoFlopPoint, type MetricPoint } from './specs.js';

/** aria-labels of the point symbols vega draws (one per data point). */
function pointMarks(svg: string): { label: string; x: number; y: number }[] {
  return [...svg.matchAll(/<path aria-label="([^"]*)" role="graphics-symbol" aria-roledescription="point" transform="translate\(([-\d.e]+),([-\d.e]+)\)"/g)].map((m) => ({
    label: m[1]!,
    x: Number(m[2]),
    y: Number(m[3]),
  }));
}

function hasColour(pixels: Uint8Array, [r, g, b]: [number, number, number], tolerance = 6): number {
  let n = 0;
  for (let i = 0; i < pixels.length; i += 4) {
    if (Math.abs(pixels[i]! - r) <= tolerance && Math.abs(pixels[i + 1]! - g) <= tolerance && Math.abs(pixels[i + 2]! - b) <= tolerance) n++;
  }
  return n;
}

describe('plots', () => {
  it('isoFLOP plot: one point per run, at its numbers, one legend entry per method', async () => {
    const points: IsoFlopPoint[] = [];
    const methods = ['dense', 'peer', 'pkm'];
    methods.forEach((method, m) =>
      [1e4, 3e4, 9e4].forEach((params, i) => points.push({ method, budget: '1e12', size: `s${i}`, params: params + m * 100, val_loss: 3 - 0.1 * i + 0.05 * m })),
    );
    const svg = await renderSvg(isoFlopSpec(points, 'parameters active per token', 'isoFLOP test'));
    expect(svg).toContain('isoFLOP test');
    const marks = pointMarks(svg);
    expect(marks).toHaveLength(points.length);
    const placed = points.map((p) => {
      const mark = marks.find((m) => m.label.includes(`method: ${p.method};`) && m.label.includes(`size: ${p.size};`));
      expect(mark, `${p.method} ${p.size}`).toBeDefined();
      expect(mark!.label).toContain(`params: ${p.params};`);
      expect(mark!.label).toContain(`val_loss: ${p.val_loss.toFixed(4)}`);
      return { ...p, ...mark! };
    });
    // log x: equal ratios of params are equal distances; y grows downwards as the loss falls
    const byParams = [...placed].sort((a, b) => a.params - b.params);
    for (let i = 1; i < byParams.length; i++) expect(byParams[i]!.x).toBeGreaterThan(byParams[i - 1]!.x);
    const dense = placed.filter((p) => p.method === 'dense');
    expect(dense[2]!.x - dense[1]!.x).toBeCloseTo(dense[1]!.x - dense[0]!.x, 6);
    const byLoss = [...placed].sort((a, b) => a.val_loss - b.val_loss);
    for (let i = 1; i < byLoss.length; i++) expect(byLoss[i]!.y).toBeLessThanOrEqual(byLoss[i - 1]!.y + 1e-9);
    for (const m of methods) expect(svg).toMatch(new RegExp(`>${m}</text>`));
  });

  it('PNG: valid file at twice the SVG size, white background, the series drawn in their colours', async () => {
    const metrics: MetricPoint[] = [];
    for (let step = 10; step <= 200; step += 10) metrics.push({ kind: 'train', step, loss: 5 * Math.exp(-step / 80) + 1.5 });
    for (let step = 50; step <= 200; step += 50) metrics.push({ kind: 'eval', step, val_loss: 5 * Math.exp(-step / 80) + 1.7 });
    const svg = await renderSvg(lossCurveSpec(metrics, 'loss test'));
    const png = await svgToPng(svg);
    expect(png.subarray(0, 8).equals(PNG_SIGNATURE)).toBe(true);
    const { width, height, pixels } = decodePng(png);
    const size = svgSize(svg);
    expect(width).toBe(Math.round(2 * size.width));
    expect(height).toBe(Math.round(2 * size.height));
    // resvg itself renders the SVG at the same size
    const direct = new Resvg(svg).render();
    expect([direct.width, direct.height]).toEqual([size.width, size.height]);
    expect(Array.from(pixels.subarray(0, 4))).toEqual([255, 255, 255, 255]);
    expect(hasColour(pixels, [0x4c, 0x78, 0xa8])).toBeGreaterThan(200); // train line
    expect(hasColour(pixels, [0xe4, 0x57, 0x56])).toBeGreaterThan(100); // validation line and points
  });

  it('writePlot writes the SVG and the PNG it returns', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'peer-plot-'));
    const files = await writePlot(dir, 'loss', lossCurveSpec([{ kind: 'train', step: 1, loss: 2 }, { kind: 'train', step: 2, loss: 1 }]));
    expect(readFileSync(join(dir, 'loss.svg'), 'utf8')).toBe(files.svg);
    expect(readFileSync(join(dir, 'loss.png')).equals(files.png)).toBe(true);
    expect(decodePng(files.png).width).toBeGreaterThan(500);
  });
});
