// Every test file runs on the engine users get by default (wasm + fixes) unless PEER_TEST_BACKEND says otherwise.
import { initBackend, type BackendRequest } from '@peer/backend';
import { registerProjectLayers } from './project-layers.test-util.js';

await initBackend({ backend: (process.env.PEER_TEST_BACKEND as BackendRequest | undefined) ?? 'wasm', log: false });

// The model knows no concrete layer: tests build models with the project's layers.
registerProjectLayers();
