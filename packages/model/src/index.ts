export type { FeedForwardKind, FeedForwardLayer, FeedForwardOutput, UsageReport } from './feed-forward.js';
