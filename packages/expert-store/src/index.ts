export type { NamedArray, NamedArrayData, SafetensorsDtype } from './named-array.js';
