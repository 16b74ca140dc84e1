import type { Options } from 'tsup';

export interface PackageBuildOptions {
  /** Entry points, default `['src/index.ts']`. */
  entry?: string[] | Record<string, string>;
  /** Share modules between entries through chunks (default false: one self-contained file per entry). */
  splitting?: boolean;
  /** Extra modules kept external (tfjs is always external). */
  external?: (string | RegExp)[];
  /** Text put at the top of every output file, e.g. a shebang for a CLI. */
  banner?: Options['banner'];
}

export function definePackageConfig(options?: PackageBuildOptions): Options | Options[];
