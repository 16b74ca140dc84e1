// Custom WGSL programs on the webgpu engine, through tfjs-backend-webgpu's program interface
// (`runWebGPUProgram`): the one place outside the engine that knows how that interface declares
// inputs, uniforms and the output buffer, and how it caches values on the host.
//
// A program is one flat dispatch of `threads` invocations; its WGSL `main` body sees `index` (the
// invocation), the inputs as read-only arrays named as given, `uniforms.<name>` and the output as
// `result` (read_write). Writing into an existing tensor (`into`) updates it in place.
import * as tf from '@tensorflow/tfjs-core';
import { onDevice } from '../device.js';

/** One scalar uniform of a program: `uniforms.<name>` in WGSL. */
export interface DeviceUniform {
  name: string;
  type: 'f32' | 'i32';
  value: number;
}

export interface DeviceProgramSpec {
  /** Names the program; with `main`, `helpers` and the uniform names it keys the shader cache. */
  name: string;
  /** Read-only inputs in binding order, each an array `<name>` of f32 (float32) or i32 (int32). */
  inputs: ReadonlyArray<readonly [name: string, tensor: tf.Tensor]>;
  /** Shape and dtype of a new output (ignored with `into`). */
  outputShape?: number[];
  outputDtype?: 'float32' | 'int32';
  /** Invocations; `main` returns early for `index >= threads` itself (use `uniforms.threads`). */
  threads: number;
  uniforms?: readonly DeviceUniform[];
  /**
   * WGSL statements of `fn main(index : i32)`; `local` is the invocation's index within its
   * workgroup of `DEVICE_WORKGROUP` (64) invocations, which are consecutive in `index`.
   */
  main: string;
  /**
   * Return at once for `index >= threads` (default). Programs with workgroup barriers turn it off
   * (a barrier after a return that depends on the invocation is invalid WGSL) and check themselves.
   */
  guard?: boolean;
  /** Module-scope WGSL: functions `main` calls, `var<workgroup>` arrays (names must not start with `get` or `set`: the engine's). */
  helpers?: string;
  /**
   * Write into this tensor instead of a new one: its values change in place, for every tensor
   * sharing its data. The engine's host copy of it (from an earlier read) is dropped.
   */
  into?: tf.Tensor;
  /** Declare `result` as `array<atomic<i32>>` (int32 output only). */
  atomic?: boolean;
}

/** The parts of tfjs-backend-webgpu's WebGPUBackend this file uses (not exported by the package as types). */
interface WebgpuEngine {
  runWebGPUProgram(
    program: object,
    inputs: tf.TensorInfo[],
    outputDtype: tf.DataType,
    uniforms?: Array<{ type: 'float32' | 'int32'; data: number[] }>,
    output?: tf.TensorInfo,
  ): tf.TensorInfo;
  tensorMap: { get(dataId: object): { values: unknown; resource: unknown } | undefined };
}

/** Invocations per workgroup of every program. */
export const DEVICE_WORKGROUP = 64;
const WORKGROUP = DEVICE_WORKGROUP;
const NAME = /^[a-z][A-Za-z0-9]*$/;

function hash(text: string): string {
  // FNV-1a: the shader cache key only needs to tell programs apart.
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return (h >>> 0).toString(36);
}

/**
 * Runs a custom WGSL program on the webgpu engine and returns its output (`into` itself when
 * given). Throws one clear error off the webgpu engine or on a malformed spec.
 */
export function runDeviceProgram(spec: DeviceProgramSpec): tf.Tensor {
  if (!onDevice()) throw new Error(`runDeviceProgram '${spec.name}': needs the webgpu engine, the active one is ${tf.getBackend()}`);
  if (!Number.isSafeInteger(spec.threads) || spec.threads < 0) throw new Error(`runDeviceProgram '${spec.name}': threads must be an integer >= 0, got ${spec.threads}`);
  const uniforms = spec.uniforms ?? [];
  const names = [...spec.inputs.map(([n]) => n), ...uniforms.map((u) => u.name)];
  for (const n of names) {
    if (!NAME.test(n) || n.startsWith('get') || n.startsWith('set') || n === 'result' || n === 'index' || n === 'threads' || n === 'local') {
      throw new Error(`runDeviceProgram '${spec.name}': '${n}' cannot name an input or uniform (lower camelCase, not get*/set*/result/index/threads/local)`);
    }
  }
  for (const [n, t] of spec.inputs) {
    if (t.dtype !== 'float32' && t.dtype !== 'int32') throw new Error(`runDeviceProgram '${spec.name}': input '${n}' is ${t.dtype}; only float32 and int32 are bound`);
    if (t.size === 0) throw new Error(`runDeviceProgram '${spec.name}': input '${n}' is empty`);
  }
  const into = spec.into;
  const outputShape = into ? into.shape : spec.outputShape;
  const outputDtype = into ? into.dtype : spec.outputDtype;
  if (!outputShape || (outputDtype !== 'float32' && outputDtype !== 'int32')) {
    throw new Error(`runDeviceProgram '${spec.name}': give outputShape and outputDtype (float32 or int32), or into`);
  }
  if (spec.atomic && outputDtype !== 'int32') throw new Error(`runDeviceProgram '${spec.name}': an atomic output must be int32`);
  const allUniforms: DeviceUniform[] = [{ name: 'threads', type: 'i32', value: spec.threads }, ...uniforms];
  const uniformDecl = allUniforms.map((u) => `${u.name} : ${u.type},`).join(' ');
  // The pipeline layout is derived from the shader: an input the code never reads would lose its
  // binding and the dispatch would fail validation (silently, as a console warning). Phony reads
  // keep every input bound.
  const uses = spec.inputs.map(([n]) => `  _ = ${n}[0];\n`).join('');
  const guard = spec.guard === false ? '' : '  if (index >= uniforms.threads) { return; }\n';
  // localIndex: the engine's private copy of the local_invocation_index builtin.
  const userCode = `${spec.helpers ?? ''}\nfn main(index : i32) {\n${uses}  let local = i32(localIndex);\n${guard}${spec.main}\n}\n`;
  const program = {
    variableNames: spec.inputs.map(([n]) => n),
    outputShape,
    shaderKey: `peer_${spec.name}_${hash(userCode + uniformDecl)}`,
    dispatchLayout: { x: [0] },
    dispatch: [Math.max(1, Math.ceil(spec.threads / WORKGROUP)), 1, 1] as [number, number, number],
    workgroupSize: [WORKGROUP, 1, 1] as [number, number, number],
    uniforms: uniformDecl,
    atomic: spec.atomic ?? false,
    getUserCode: () => userCode,
  };
  const engine = tf.backend() as unknown as WebgpuEngine;
  const data = allUniforms.map((u) => ({ type: u.type === 'f32' ? ('float32' as const) : ('int32' as const), data: [u.value] }));
  if (into) {
    const info = engine.runWebGPUProgram(program, spec.inputs.map(([, t]) => t), outputDtype, data, into);
    // The engine serves reads from a host copy made by an earlier read: it is stale now.
    const record = engine.tensorMap.get(info.dataId);
    if (record && record.resource !== null && record.resource !== undefined) record.values = null;
    return into;
  }
  const info = engine.runWebGPUProgram(program, spec.inputs.map(([, t]) => t), outputDtype, data);
  return tf.engine().makeTensorFromTensorInfo(info);
}
