// One benchLayerStep config in a plain Node process, from the built package: the measured process
// carries no TypeScript loader (tsx adds about 110 MB of RSS), as `peer-train bench layer` does not.
// Spawned by layer-step.ts; argument: JSON { backend, bench }.
import process from 'node:process';
import { initBackend } from '@peer/backend';
import { benchLayerStep } from '../dist/index.js';

const { backend, bench } = JSON.parse(process.argv[2] ?? '{}');
await initBackend({ backend, log: false });
const result = await benchLayerStep(bench);
process.stdout.write(`${JSON.stringify(result)}\n`);
