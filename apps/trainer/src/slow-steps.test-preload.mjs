// Preloaded (`--import`) into a CLI child by tests that must interrupt a run mid-way: every
// setImmediate (the training loop yields once per step) first waits 40 ms, so that the tiny run
// outlasts the test's other steps. Nothing else about the run changes.
const original = globalThis.setImmediate;
globalThis.setImmediate = (callback, ...args) => globalThis.setTimeout(() => original(callback, ...args), 40);
