import type { Figure, Target } from './types.js';

/** The p-th percentile (0–100) by nearest rank of `values` (not modified); NaN when empty. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

/** Per run, the p-th percentile (or the largest) of what `pick` takes from it: one sample per run for a figure. */
export function perRun<Run>(runs: readonly Run[], pick: (run: Run) => number[], p: number | 'max'): number[] {
  return runs.map((run) => (p === 'max' ? Math.max(...pick(run)) : percentile(pick(run), p)));
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** A figure from its per-run samples: median, min, max, and whether the median meets the target. */
export function figure(fields: {
  id: string;
  label: string;
  unit: string;
  samples: readonly number[];
  target?: Target;
  note?: string;
}): Figure {
  const samples = [...fields.samples];
  const out: Figure = {
    id: fields.id,
    label: fields.label,
    unit: fields.unit,
    samples,
    median: median(samples),
    min: samples.length === 0 ? NaN : Math.min(...samples),
    max: samples.length === 0 ? NaN : Math.max(...samples),
  };
  if (fields.target !== undefined) {
    out.target = fields.target;
    out.met = fields.target.op === '<=' ? out.median <= fields.target.value : out.median >= fields.target.value;
  }
  if (fields.note !== undefined) out.note = fields.note;
  return out;
}

/** A number for a table: 3 significant digits, no exponent for the magnitudes benchmarks produce. */
export function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  const abs = Math.abs(value);
  if (abs >= 100) return value.toFixed(0);
  if (abs >= 10) return value.toFixed(1);
  if (abs >= 1) return value.toFixed(2);
  return value.toPrecision(2);
}

/** Milliseconds between two process.hrtime.bigint() readings (CLOCK_MONOTONIC, the same in every process). */
export function msBetween(from: bigint, to: bigint): number {
  return Number(to - from) / 1e6;
}
