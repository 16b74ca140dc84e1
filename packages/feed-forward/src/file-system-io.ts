// model.save('file://dir') and tf.loadLayersModel('file://dir/model.json') on Node without
// tfjs-node (whose native binding does not install here), writing beside model.json the state of
// every wrapped feed-forward layer (expert tables, sparse optimizer moments) as safetensors.
//
// Layout of `dir`: model.json (tfjs's format), weights-<gen>.bin (the tfjs variables) and
// state-<gen>-<layer>.safetensors per wrapped layer, where <gen> is new for each save. Every data
// file is written and fsynced under its new name first; model.json, which names them, is replaced
// last by a rename. A crash leaves the previous model.json with its own files, or the new one with
// all of its files; files of older generations are removed after the rename.
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { readSafetensors, writeSafetensors } from '@peer/expert-store';
import { liveLayer, parkLoadedState } from './layer-state-link.js';

const MODEL_JSON = 'model.json';
/** Config keys as tfjs writes them in model.json (snake_case). */
const SAVED_STATE_ID = 'state_id';
const SAVED_STATE_FILE = 'state_file';
const OWN_FILE = /^(weights-[0-9a-f]+\.bin|state-[0-9a-f]+-.+\.safetensors)$/;

type Json = Record<string, unknown>;

/** The layer configs (objects with `class_name` and `config`) anywhere in a model topology, nested models included. */
function layerConfigs(node: unknown, out: Json[] = []): Json[] {
  if (Array.isArray(node)) for (const item of node) layerConfigs(item, out);
  else if (node !== null && typeof node === 'object') {
    const obj = node as Json;
    const config = obj.config;
    if (typeof obj.class_name === 'string' && config !== null && typeof config === 'object' && !Array.isArray(config)) out.push(config as Json);
    for (const value of Object.values(obj)) layerConfigs(value, out);
  }
  return out;
}

function writeFileDurably(path: string, bytes: Uint8Array): void {
  const fd = openSync(path, 'w');
  try {
    let done = 0;
    while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function fsyncDir(dir: string): void {
  let fd: number;
  try {
    fd = openSync(dir, 'r');
  } catch {
    return; // platforms that cannot open directories make renames durable themselves
  }
  try {
    fsyncSync(fd);
  } catch {
    // file systems without directory fsync: nothing more can be done
  } finally {
    closeSync(fd);
  }
}

function weightBytes(data: tf.io.WeightData | undefined): Uint8Array {
  if (data === undefined) return new Uint8Array(0);
  return new Uint8Array(tf.io.CompositeArrayBuffer.join(data));
}

/** A file name for a layer's state, from its name (which may hold '/'). */
function stateFileName(gen: string, layerName: string, taken: Set<string>): string {
  const safe = layerName.replace(/[^A-Za-z0-9.-]/g, '-');
  let name = `state-${gen}-${safe}.safetensors`;
  for (let i = 2; taken.has(name); i++) name = `state-${gen}-${safe}-${i}.safetensors`;
  taken.add(name);
  return name;
}

/** Directory and model.json path of a file-system handler path (a directory, or a path ending in .json). */
function paths(path: string): { dir: string; modelJson: string } {
  return path.endsWith('.json') ? { dir: dirname(path), modelJson: path } : { dir: path, modelJson: join(path, MODEL_JSON) };
}

async function save(path: string, artifacts: tf.io.ModelArtifacts): Promise<tf.io.SaveResult> {
  if (artifacts.modelTopology instanceof ArrayBuffer || artifacts.modelTopology === undefined) {
    throw new Error(`fileSystem('${path}'): only layers models (a JSON topology) can be saved`);
  }
  const { dir, modelJson } = paths(path);
  mkdirSync(dir, { recursive: true });
  const gen = `${Date.now().toString(16)}${randomBytes(4).toString('hex')}`;
  // The topology is tfjs's own object: work on a copy.
  const topology = structuredClone(artifacts.modelTopology) as Json;
  const written = new Set<string>();
  for (const config of layerConfigs(topology)) {
    const id = config[SAVED_STATE_ID];
    if (typeof id !== 'string') continue;
    const layer = liveLayer(id);
    const layerName = typeof config.name === 'string' ? config.name : 'layer';
    if (!layer) throw new Error(`fileSystem('${path}'): layer '${layerName}' is no longer alive (disposed?), its state cannot be saved`);
    const file = stateFileName(gen, layerName, written);
    writeSafetensors(join(dir, file), layer.stateEntries(), { format: 'pt', layer: layerName });
    delete config[SAVED_STATE_ID];
    config[SAVED_STATE_FILE] = file;
  }
  const weightsFile = `weights-${gen}.bin`;
  const weights = weightBytes(artifacts.weightData);
  writeFileDurably(join(dir, weightsFile), weights);
  written.add(weightsFile);
  const modelJSON: Json = {
    modelTopology: topology,
    format: artifacts.format,
    generatedBy: artifacts.generatedBy,
    convertedBy: artifacts.convertedBy,
    weightsManifest: [{ paths: [weightsFile], weights: artifacts.weightSpecs ?? [] }],
    ...(artifacts.trainingConfig ? { trainingConfig: artifacts.trainingConfig } : {}),
    ...(artifacts.userDefinedMetadata ? { userDefinedMetadata: artifacts.userDefinedMetadata } : {}),
    ...(artifacts.signature ? { signature: artifacts.signature } : {}),
  };
  const tmp = `${modelJson}.tmp-${gen}`;
  writeFileDurably(tmp, new TextEncoder().encode(JSON.stringify(modelJSON)));
  renameSync(tmp, modelJson);
  fsyncDir(dir);
  for (const name of readdirSync(dir)) {
    if (OWN_FILE.test(name) && !written.has(name)) rmSync(join(dir, name), { force: true });
  }
  return { modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON({ ...artifacts, modelTopology: topology }) };
}

async function load(path: string): Promise<tf.io.ModelArtifacts> {
  const { dir, modelJson } = paths(path);
  let modelJSON: tf.io.ModelJSON;
  try {
    modelJSON = JSON.parse(readFileSync(modelJson, 'utf8')) as tf.io.ModelJSON;
  } catch (err) {
    throw new Error(`${modelJson}: cannot read the model: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  if (modelJSON.modelTopology === null || typeof modelJSON.modelTopology !== 'object') throw new Error(`${modelJson}: field modelTopology is missing`);
  for (const config of layerConfigs(modelJSON.modelTopology)) {
    const file = config[SAVED_STATE_FILE];
    if (typeof file !== 'string') continue;
    if (basename(file) !== file) throw new Error(`${modelJson}: state_file '${file}' of layer '${String(config.name)}' must be a file name beside model.json`);
    const statePath = join(dir, file);
    const state = readSafetensors(statePath);
    delete config[SAVED_STATE_FILE];
    config[SAVED_STATE_ID] = parkLoadedState({ get: state.get, source: statePath });
  }
  return tf.io.getModelArtifactsForJSON(modelJSON, async (manifest) => {
    const specs: tf.io.WeightsManifestEntry[] = [];
    const buffers: ArrayBuffer[] = [];
    for (const group of manifest) {
      specs.push(...group.weights);
      for (const p of group.paths) {
        const bytes = readFileSync(join(dir, p));
        buffers.push(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer);
      }
    }
    return [specs, tf.io.CompositeArrayBuffer.join(buffers)];
  });
}

/**
 * An IOHandler for `model.save(fileSystem(dir))` and `tf.loadLayersModel(fileSystem(dir))`: tfjs's
 * model.json and weights plus the state of every wrapped feed-forward layer. `path` is the directory,
 * or the model.json inside it.
 */
export function fileSystem(path: string): tf.io.IOHandler {
  return { save: (artifacts) => save(path, artifacts), load: () => load(path) };
}

let registered = false;

/**
 * Makes `file://` URLs use `fileSystem`. Called when @peer/feed-forward/tf-layers is imported; it
 * registers nothing where another `file://` handler (tfjs-node's) already exists, since tfjs refuses
 * URLs that two handlers claim; there, pass `fileSystem(dir)` to save and load instead.
 */
export function registerFileSystemRouter(): boolean {
  if (registered) return true;
  const probe = 'file:///peer-probe/model.json';
  if (tf.io.getSaveHandlers(probe).length > 0 || tf.io.getLoadHandlers(probe).length > 0) return false;
  // tfjs's routers answer null for URLs they do not handle (its IORouter type omits it).
  const router = (url: string | string[]): tf.io.IOHandler =>
    (typeof url === 'string' && url.startsWith('file://') ? fileSystem(url.slice('file://'.length)) : null) as tf.io.IOHandler;
  tf.io.registerSaveRouter(router);
  tf.io.registerLoadRouter(router);
  registered = true;
  return true;
}

// `file://` works once this subpath is imported, as it does once tfjs-node is.
registerFileSystemRouter();
