import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { UsageError } from '../errors.js';
import { isSweepPreset, loadPreset, presetNames } from './presets.js';
import { configToJson, resolveConfig, validateConfig } from './resolve.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'peer-config-'));

function usageMessage(f: () => unknown): string {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).exitCode).toBe(2);
    return (err as Error).message;
  }
  throw new Error('expected a UsageError');
}

describe('presets', () => {
  it('the default preset is a small PEER model on sotu with bytes', () => {
    const { config } = resolveConfig({});
    expect(config.model.ffw.kind).toBe('peer');
    expect(config.data).toMatchObject({ corpus: 'sotu', tokenizer: 'byte' });
  });

  it('every preset resolves to a valid config', () => {
    expect(presetNames()).toEqual(expect.arrayContaining(['default', 'dense', 'tiny']));
    for (const name of presetNames().filter((n) => !isSweepPreset(loadPreset(n)))) {
      const { config } = resolveConfig({ preset: name });
      expect(config.model.vocabSize).toBeGreaterThanOrEqual(256);
      expect(config.data.seqLen).toBeLessThanOrEqual(config.model.seqLen);
    }
  });

  it('the dense preset is the matched baseline of the issue (d=256, 4 layers, 4 heads, seq 256, batch 16, bytes)', () => {
    const { config } = resolveConfig({ preset: 'dense' });
    expect(config.model).toMatchObject({ dim: 256, layers: 4, heads: 4, seqLen: 256, vocabSize: 256, ffw: { kind: 'dense', hidden: 1024 } });
    expect(config.data).toMatchObject({ corpus: 'sotu', tokenizer: 'byte', batchSize: 16, seqLen: 256 });
  });

  it('fills schema defaults under a preset and resolves the model section', () => {
    const { config, name, source } = resolveConfig({ preset: 'tiny' });
    expect(name).toBe('tiny');
    expect(source).toBe('preset tiny');
    // from the preset
    expect(config.model.dim).toBe(32);
    expect(config.optim.lr).toBe(3e-3);
    // schema defaults
    expect(config.optim.beta2).toBe(0.95);
    expect(config.optim.sparseLr).toBe(3e-3);
    expect(config.optim.sparseOptimizer).toBe('adam');
    expect(config.data.cacheDir).toBe('.cache/peer');
    expect(config.data.fractions).toEqual({ train: 0.9, validation: 0.05, test: 0.05 });
    expect(config.backend).toBe('auto');
    // vocabSize from the tokenizer, data.seqLen from the model, 'middle' resolved to a block list
    expect(config.model.vocabSize).toBe(256);
    expect(config.data.seqLen).toBe(32);
    expect(config.model.sparseBlocks).toEqual([1]);
  });

  it('merges "extends" chains, later files winning', () => {
    const dense = loadPreset('dense');
    const peer = loadPreset('peer');
    // peer = dense with the middle block's FFW replaced
    expect({ ...(peer.model as object), ffw: undefined }).toEqual({ ...(dense.model as object), ffw: undefined });
    expect(peer.model).toMatchObject({ dim: 256, ffw: { kind: 'peer', hidden: 1024, options: { numExperts: 65536 } } });
    expect(peer.train).toEqual(dense.train);
    expect(peer).not.toHaveProperty('extends');
    expect(peer).not.toHaveProperty('description');
  });

  it('names the unknown preset and lists the known ones', () => {
    expect(usageMessage(() => resolveConfig({ preset: 'nope' }))).toMatch(/^unknown preset 'nope': expected one of .*dense.*tiny/);
  });

  it('round-trips: a resolved config validates to itself', () => {
    const { config } = resolveConfig({ preset: 'default' });
    const json = configToJson(config);
    expect(configToJson(validateConfig(json))).toEqual(json);
  });
});

describe('flags and --set', () => {
  it('applies --set values with their JSON types, in order, after the flags', () => {
    const { config } = resolveConfig({
      preset: 'tiny',
      flags: { steps: 7 },
      sets: ['optim.lr=3e-4', 'model.tieEmbeddings=false', 'model.sparseBlocks=[0]', 'data.corpus=moby-dick', 'train.steps=9'],
    });
    expect(config.optim.lr).toBe(3e-4);
    expect(config.model.tieEmbeddings).toBe(false);
    expect(config.model.sparseBlocks).toEqual([0]);
    expect(config.data.corpus).toBe('moby-dick');
    expect(config.train.steps).toBe(9);
  });

  it('--steps and --flops replace each other; --seed sets the model and the loop seeds', () => {
    const a = resolveConfig({ preset: 'tiny', flags: { flops: 1e12, seed: 5 } }).config;
    expect(a.train.flops).toBe(1e12);
    expect(a.train.steps).toBeUndefined();
    expect(a.train.seed).toBe(5);
    expect(a.model.seed).toBe(5);
    const b = resolveConfig({ preset: 'tiny', flags: { steps: 3 } }).config;
    expect(b.train).toMatchObject({ steps: 3 });
    expect(b.train.flops).toBeUndefined();
  });

  it('--text-field sets data.textField; left out, the key stays absent (configs and their hashes as before)', () => {
    const { config } = resolveConfig({ preset: 'tiny', flags: { data: 'c4/*.parquet', textField: 'content' } });
    expect(config.data).toMatchObject({ corpus: 'c4/*.parquet', textField: 'content' });
    expect('textField' in (configToJson(resolveConfig({ preset: 'tiny' }).config).data as object)).toBe(false);
    expect(usageMessage(() => resolveConfig({ preset: 'tiny', sets: ['data.textField=""'] }))).toMatch(/^invalid config: data\.textField = "": /);
  });

  it('--ffw switches the layer kind and drops the old kind\'s settings', () => {
    const { config } = resolveConfig({ preset: 'tiny', flags: { ffw: 'dense' } });
    expect(config.model.ffw.kind).toBe('dense');
    // tiny sets PEER options and hidden 64; the switch starts from the defaults (4 * dim)
    expect(config.model.ffw.hidden).toBe(4 * 32);
    expect(config.model.ffw.options).toEqual({});
    // the same kind keeps its settings
    expect(resolveConfig({ preset: 'tiny', flags: { ffw: 'peer' } }).config.model.ffw.options).toMatchObject({ numExperts: 256 });
  });

  it('--tokenizer sets the vocabulary size too; a too small vocabulary is refused', () => {
    const { config } = resolveConfig({ preset: 'tiny', flags: { tokenizer: 'gpt2' } });
    expect(config.data.tokenizer).toBe('gpt2');
    expect(config.model.vocabSize).toBe(50257);
    expect(usageMessage(() => resolveConfig({ preset: 'tiny', sets: ['data.tokenizer=gpt2', 'model.vocabSize=256'] }))).toBe(
      "invalid config: model.vocabSize = 256 is smaller than the gpt2 tokenizer's 50257 ids (--tokenizer sets both)",
    );
    expect(usageMessage(() => resolveConfig({ preset: 'tiny', flags: { tokenizer: 'klingon' } }))).toMatch(/^--tokenizer klingon: unknown tokenizer "klingon"/);
  });

  it('reports an unknown key with its full path', () => {
    expect(usageMessage(() => resolveConfig({ preset: 'tiny', sets: ['optim.lrr=1'] }))).toBe("invalid config: unknown key 'optim.lrr'");
    expect(usageMessage(() => resolveConfig({ preset: 'tiny', sets: ['model.foo=1'] }))).toBe("invalid config: unknown key 'model.foo'");
    expect(usageMessage(() => resolveConfig({ preset: 'tiny', sets: ['bogus=1'] }))).toBe("invalid config: unknown key 'bogus'");
  });

  it('reports a wrong type or value with the key and the value', () => {
    expect(usageMessage(() => resolveConfig({ preset: 'tiny', sets: ['model.dim=abc'] }))).toMatch(/^invalid config: model\.dim = "abc": /);
    expect(usageMessage(() => resolveConfig({ preset: 'tiny', sets: ['optim.lr=-1'] }))).toMatch(/^invalid config: optim\.lr = -1: /);
    expect(usageMessage(() => resolveConfig({ preset: 'tiny', sets: ['model.heads=3'] }))).toBe('invalid config: model.heads = 3: must divide dim (32)');
    expect(usageMessage(() => resolveConfig({ preset: 'tiny', sets: ['data.seqLen=64'] }))).toBe('invalid config: data.seqLen = 64: must be at most model.seqLen (32)');
    expect(usageMessage(() => resolveConfig({ preset: 'tiny', sets: ['model.ffw.kind=mlp'] }))).toMatch(/^invalid config: model\.ffw\.kind = "mlp": /);
    expect(usageMessage(() => resolveConfig({ preset: 'tiny', sets: ['optim.minLr=1'] }))).toBe('invalid config: optim.minLr = 1: must be at most optim.lr (0.003)');
  });

  it('refuses both steps and flops, and neither', () => {
    expect(usageMessage(() => resolveConfig({ preset: 'tiny', sets: ['train.flops=1e12'] }))).toMatch(/train\.flops.*set train\.steps or train\.flops, not both/);
    expect(usageMessage(() => validateConfig({ model: { vocabSize: 256 }, train: {} }))).toMatch(/train\.steps = missing: set train\.steps or train\.flops$/);
  });
});

describe('config files', () => {
  it('reads a partial config that extends a preset', () => {
    const dir = tmp();
    const file = join(dir, 'mine.json');
    writeFileSync(file, JSON.stringify({ extends: 'tiny', optim: { lr: 1e-2 } }));
    const { config, name } = resolveConfig({ configFile: file });
    expect(name).toBe('mine');
    expect(config.optim.lr).toBe(1e-2);
    expect(config.model.dim).toBe(32);
  });

  it("reads a run's config.json (its config field)", () => {
    const dir = tmp();
    const { config } = resolveConfig({ preset: 'tiny', sets: ['optim.lr=2e-3'] });
    const file = join(dir, 'config.json');
    writeFileSync(file, JSON.stringify({ name: 'tiny', config, versions: { x: '1' } }));
    expect(configToJson(resolveConfig({ configFile: file }).config)).toEqual(configToJson(config));
  });

  it('names a missing or broken file', () => {
    const dir = tmp();
    expect(usageMessage(() => resolveConfig({ configFile: join(dir, 'none.json') }))).toBe(`config file not found: ${join(dir, 'none.json')}`);
    writeFileSync(join(dir, 'bad.json'), '{ "model": ');
    expect(usageMessage(() => resolveConfig({ configFile: join(dir, 'bad.json') }))).toMatch(/^config file .*bad\.json is not valid JSON/);
    writeFileSync(join(dir, 'arr.json'), '[1]');
    expect(usageMessage(() => resolveConfig({ configFile: join(dir, 'arr.json') }))).toMatch(/must hold a JSON object/);
    expect(usageMessage(() => resolveConfig({ configFile: join(dir, 'arr.json'), preset: 'tiny' }))).toBe('give --preset or --config, not both');
  });
});
