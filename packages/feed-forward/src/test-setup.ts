// Every test file runs on the engine users get by default (wasm + fixes) unless PEER_TEST_BACKEND says otherwise.
import { initBackend, type BackendRequest } from '@peer/backend';

await initBackend({ backend: (process.env.PEER_TEST_BACKEND as BackendRequest | undefined) ?? 'wasm', log: false });
