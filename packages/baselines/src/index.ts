export { DenseFfw, denseFfwForward, type DenseFfwParams } from './dense-ffw.js';
export {
  DENSE_FFW_ACTIVATIONS,
  DenseFfwConfigError,
  DenseFfwConfigSchema,
  parseDenseFfwConfig,
  type DenseFfwActivation,
  type DenseFfwConfig,
  type DenseFfwConfigInput,
} from './dense-ffw-config.js';
