export { closeness, expectClose, type CloseOptions, type Closeness } from './closeness.js';
export { checkGradients, type GradCheckOptions, type GradCheckResult } from './finite-differences.js';
export { expectNoLeaks } from './leaks.js';
export { testRng, type TestRng } from './rng.js';
export { activation64, erf64 } from './float64-activations.js';
