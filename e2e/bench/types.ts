/**
 * The contract between the benchmark runner (runner.ts) and a benchmark module.
 *
 * A benchmark module exports `benchmark: Benchmark`. It builds what it needs in network namespaces it
 * creates and removes itself (also on failure; a NetnsLab does that), measures, and returns figures. The
 * runner lists modules by path in BENCHMARK_MODULES: adding a benchmark is one line there.
 */

/** Direction of a target: the figure should be at most / at least `value`. */
export interface Target {
  op: '<=' | '>=';
  value: number;
  /** where the target comes from, e.g. "issue 7" */
  source?: string;
}

/**
 * One reported figure: a value per run (`samples`), summarised as median, min and max. A comparison is a
 * figure too: its samples are ratios measured side by side in the same run.
 */
export interface Figure {
  /** stable id, e.g. "cold-start.n2000.seconds" */
  id: string;
  label: string;
  unit: string;
  samples: number[];
  median: number;
  min: number;
  max: number;
  target?: Target;
  /** true / false when there is a target, undefined otherwise */
  met?: boolean;
  /** how the figure was taken, one line */
  note?: string;
}

export interface BenchmarkResult {
  name: string;
  title: string;
  /** what was measured and how, a few sentences of markdown */
  method: string;
  figures: Figure[];
  /** anything a reader should know: what limits a figure, anomalies seen in this run */
  notes: string[];
  /** raw per-run data worth keeping in the JSON (not rendered) */
  details?: unknown;
  /** set by the runner: when the benchmark ran, how long, and the machine's 1-minute load average before and after */
  ranAt?: string;
  seconds?: number;
  loadAverage?: [before: number, after: number];
  /** set by the runner: the CPU it ran on (a report merged from partial runs may hold sections of other machines) */
  cpuModel?: string;
}

export interface BenchContext {
  /** small sizes and a single short run: the test suite's smoke run (figures are printed, never judged) */
  quick: boolean;
  /** runs per figure (the runner's default, a benchmark may use fewer for very long runs) */
  runs: number;
  /** root of the checkout (holds dist/) */
  repoRoot: string;
  /** progress lines for the console */
  log: (line: string) => void;
}

export interface Benchmark {
  /** short id, also the section anchor: "convergence" */
  name: string;
  title: string;
  run(context: BenchContext): Promise<BenchmarkResult>;
}
