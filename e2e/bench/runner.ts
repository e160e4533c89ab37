#!/usr/bin/env node
/**
 * `npm run bench`: runs every benchmark in BENCHMARK_MODULES (each in network namespaces it creates and
 * removes), prints the figures and writes docs/benchmarks.md and docs/benchmarks.json.
 *
 *   node dist/e2e/bench/runner.js [--runs=N] [--only=name,name] [--quick] [--out-dir=DIR] [--no-write]
 *
 * With --only the named benchmarks' sections replace theirs in the existing report; the others stay as the
 * last run left them (each section says when it ran and under what load).
 *
 * Adding a benchmark: write a module next to this one that exports `benchmark: Benchmark` (types.ts), and add
 * its path to BENCHMARK_MODULES below. Nothing else needs to change.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { netnsAvailable } from '../../test/netns.js';
import { formatNumber } from './stats.js';
import type { Benchmark, BenchmarkResult, Figure } from './types.js';

/** One line per benchmark module (relative to this file), run in this order. */
export const BENCHMARK_MODULES: readonly string[] = [
  './cold-start.js',
  './convergence.js',
  './churn.js',
  './userspace.js',
  './wireguard.js',
  './wakeup.js',
  './soak.js',
  './probing.js',
  './cluster.js',
];

export interface MachineInfo {
  cpuModel: string;
  cores: number;
  kernel: string;
  node: string;
  memoryGiB: number;
  iproute2: string;
  etcd: string;
  loadAverageAtStart: number[];
  loadAverageAtEnd: number[];
}

export interface BenchReport {
  startedAt: string;
  finishedAt: string;
  durationSeconds: number;
  command: string;
  quick: boolean;
  runs: number;
  machine: MachineInfo;
  results: BenchmarkResult[];
  failures: { module: string; error: string }[];
}

export interface RunOptions {
  quick?: boolean;
  runs?: number;
  /** benchmark names to run (default all) */
  only?: readonly string[];
  log?: (line: string) => void;
  modules?: readonly string[];
}

const REPO_ROOT = fileURLToPath(new URL('../../..', import.meta.url));

function version(argv: string[]): string {
  try {
    return execFileSync(argv[0], argv.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
      .split('\n')[0]
      .trim();
  } catch {
    return 'unknown';
  }
}

export function machineInfo(): MachineInfo {
  const cpu = cpus();
  return {
    cpuModel: cpu[0]?.model.trim() ?? 'unknown',
    cores: cpu.length,
    kernel: release(),
    node: process.version,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    iproute2: version(['ip', '-V']),
    etcd: version(['etcd', '--version']),
    loadAverageAtStart: loadavg().map((value) => Math.round(value * 100) / 100),
    loadAverageAtEnd: [],
  };
}

/** Runs the benchmarks one after the other; a benchmark that fails is reported and the others still run. */
export async function runBenchmarks(options: RunOptions = {}): Promise<BenchReport> {
  const log = options.log ?? ((line: string) => process.stdout.write(`${line}\n`));
  const quick = options.quick ?? false;
  const runs = options.runs ?? (quick ? 1 : 5);
  const started = new Date();
  const machine = machineInfo();
  const results: BenchmarkResult[] = [];
  const failures: BenchReport['failures'] = [];
  for (const path of options.modules ?? BENCHMARK_MODULES) {
    let benchmark: Benchmark;
    try {
      benchmark = ((await import(new URL(path, import.meta.url).href)) as { benchmark: Benchmark }).benchmark;
    } catch (err) {
      failures.push({ module: path, error: (err as Error).message });
      continue;
    }
    if (options.only !== undefined && options.only.length > 0 && !options.only.includes(benchmark.name)) continue;
    log(`== ${benchmark.title}`);
    const t0 = performance.now();
    const ranAt = new Date().toISOString();
    const loadBefore = Math.round(loadavg()[0] * 100) / 100;
    try {
      const result = await benchmark.run({ quick, runs, repoRoot: REPO_ROOT, log: (line) => log(`   ${line}`) });
      result.ranAt = ranAt;
      result.seconds = Math.round((performance.now() - t0) / 1000);
      result.loadAverage = [loadBefore, Math.round(loadavg()[0] * 100) / 100];
      result.cpuModel = machine.cpuModel;
      results.push(result);
      for (const f of result.figures) log(`   ${describeFigure(f)}`);
      for (const note of result.notes) log(`   note: ${note}`);
    } catch (err) {
      failures.push({ module: path, error: (err as Error).stack ?? String(err) });
      log(`   FAILED: ${(err as Error).message}`);
    }
    log(`   (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
  }
  machine.loadAverageAtEnd = loadavg().map((value) => Math.round(value * 100) / 100);
  const finished = new Date();
  return {
    startedAt: started.toISOString(),
    finishedAt: finished.toISOString(),
    durationSeconds: Math.round((finished.getTime() - started.getTime()) / 1000),
    command: `npm run bench${quick ? ' -- --quick' : ''}`,
    quick,
    runs,
    machine,
    results,
    failures,
  };
}

function targetText(f: Figure): string {
  return f.target === undefined ? '' : `${f.target.op === '<=' ? '≤' : '≥'} ${formatNumber(f.target.value)} ${f.unit}`.trim();
}

function describeFigure(f: Figure): string {
  const verdict = f.met === undefined ? '' : f.met ? `  [target ${targetText(f)}: met]` : `  [target ${targetText(f)}: NOT met]`;
  return `${f.label}: ${formatNumber(f.median)} ${f.unit} (min ${formatNumber(f.min)}, max ${formatNumber(f.max)}, ${f.samples.length} runs)${verdict}`;
}

function row(cells: string[]): string {
  return `| ${cells.map((cell) => cell.replace(/\|/g, '\\|')).join(' | ')} |`;
}

export function renderMarkdown(report: BenchReport): string {
  const m = report.machine;
  const lines: string[] = [
    '# weft benchmarks',
    '',
    `Written by \`${report.command}\` (e2e/bench/runner.ts) on ${report.startedAt.slice(0, 10)}; ${report.durationSeconds} s. ` +
      "Do not edit: the next run overwrites this file. The same figures, with every run's samples, are in benchmarks.json.",
    '',
    `**Machine** (of the latest run; each section says the CPU it ran on): ${m.cpuModel}, ${m.cores} cores, ${m.memoryGiB} GiB, Linux ${m.kernel}, Node ${m.node}, ${m.iproute2}, ${m.etcd}. ` +
      `Load average at start ${m.loadAverageAtStart.join(' / ')}, at end ${m.loadAverageAtEnd.join(' / ')}.`,
    '',
    'Everything runs in network namespaces on this one machine (documentation and benchmark address ranges only): an etcd host and an agent host joined by a',
    'veth "switch", as in the e2e lab. Each figure is the median of several runs, with the smallest and largest run; a comparison',
    '(×) is a ratio taken side by side within each run, then summarised the same way. Tests never assert on these numbers.',
    '',
  ];
  if (report.quick) lines.push("**Quick run** (the test suite's smoke sizes): these figures say nothing about performance.", '');
  const targeted = report.results.flatMap((result) => result.figures.filter((f) => f.target !== undefined));
  if (targeted.length > 0) {
    lines.push(
      '## Against the targets',
      '',
      row(['figure', 'target', 'median', 'min', 'max', 'met']),
      row(['---', '---', '---:', '---:', '---:', '---']),
    );
    for (const f of targeted) {
      lines.push(
        row([
          f.label,
          targetText(f),
          `${formatNumber(f.median)} ${f.unit}`,
          formatNumber(f.min),
          formatNumber(f.max),
          f.met ? 'yes' : '**no**',
        ]),
      );
    }
    lines.push('');
  }
  for (const result of report.results) {
    const when =
      result.ranAt === undefined
        ? ''
        : `*Ran ${result.ranAt.slice(0, 16).replace('T', ' ')} UTC${result.cpuModel === undefined ? '' : ` on ${result.cpuModel}`} for ${result.seconds ?? '?'} s; ` +
          `1-minute load average ${result.loadAverage?.[0] ?? '?'} before, ${result.loadAverage?.[1] ?? '?'} after (${m.cores} cores).*`;
    lines.push(
      `## ${result.title}`,
      '',
      result.method,
      '',
      ...(when === '' ? [] : [when, '']),
      row(['figure', 'median', 'min', 'max', 'runs', 'target']),
      row(['---', '---:', '---:', '---:', '---:', '---']),
    );
    for (const f of result.figures) {
      lines.push(
        row([
          f.label,
          `${formatNumber(f.median)} ${f.unit}`.trim(),
          formatNumber(f.min),
          formatNumber(f.max),
          String(f.samples.length),
          f.target === undefined ? '' : `${targetText(f)}${f.met ? '' : ' (not met)'}`,
        ]),
      );
    }
    lines.push('');
    if (result.notes.length > 0) {
      for (const note of result.notes) lines.push(`- ${note}`);
      lines.push('');
    }
  }
  if (report.failures.length > 0) {
    lines.push('## Failed', '');
    for (const failure of report.failures) lines.push(`- \`${failure.module}\`: ${failure.error.split('\n')[0]}`);
    lines.push('');
  }
  return `${lines.join('\n')}\n`;
}

export function writeReport(report: BenchReport, outDir: string): { markdown: string; json: string } {
  mkdirSync(outDir, { recursive: true });
  const markdown = join(outDir, 'benchmarks.md');
  const json = join(outDir, 'benchmarks.json');
  writeFileSync(markdown, renderMarkdown(report));
  writeFileSync(
    json,
    `${JSON.stringify(report, (_key, value: unknown) => (typeof value === 'number' && !Number.isFinite(value) ? null : value), 2)}\n`,
  );
  return { markdown, json };
}

/** Keeps the results of benchmarks this run did not run from an earlier report, in BENCHMARK_MODULES order. */
function mergeInto(report: BenchReport, jsonPath: string): void {
  let earlier: BenchReport;
  try {
    earlier = JSON.parse(readFileSync(jsonPath, 'utf8')) as BenchReport;
  } catch {
    return;
  }
  const ran = new Set(report.results.map((result) => result.name));
  const kept = earlier.results.filter((result) => !ran.has(result.name));
  for (const result of kept) result.cpuModel ??= earlier.machine.cpuModel;
  const merged = [...kept, ...report.results];
  const order = (name: string) => {
    const at = earlier.results.findIndex((result) => result.name === name);
    return at < 0 ? Number.MAX_SAFE_INTEGER : at;
  };
  report.results = merged.sort((a, b) => order(a.name) - order(b.name));
  report.command = `${earlier.command}, then ${report.command} -- --only=${[...ran].join(',')}`;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const flag = (name: string) => args.find((arg) => arg === `--${name}` || arg.startsWith(`--${name}=`));
  const value = (name: string) => flag(name)?.split('=').slice(1).join('=');
  if (flag('help') !== undefined) {
    process.stdout.write('usage: node dist/e2e/bench/runner.js [--runs=N] [--only=name,name] [--quick] [--out-dir=DIR] [--no-write]\n');
    return;
  }
  if (!netnsAvailable()) {
    process.stderr.write('weft bench: needs root and iproute2 (it builds network namespaces)\n');
    process.exit(2);
  }
  const runs = value('runs') === undefined ? undefined : Number(value('runs'));
  if (runs !== undefined && (!Number.isInteger(runs) || runs < 1)) throw new Error(`--runs: ${value('runs')} is not a positive integer`);
  const report = await runBenchmarks({
    quick: flag('quick') !== undefined,
    ...(runs === undefined ? {} : { runs }),
    only: value('only')?.split(',').filter(Boolean) ?? [],
  });
  if (flag('no-write') === undefined) {
    const outDir = value('out-dir') ?? join(REPO_ROOT, 'docs');
    // A partial run (--only) replaces its benchmarks' sections and keeps the others from the last full run.
    if (flag('only') !== undefined) mergeInto(report, join(outDir, 'benchmarks.json'));
    const written = writeReport(report, outDir);
    process.stdout.write(`wrote ${written.markdown} and ${written.json}\n`);
  }
  if (report.failures.length > 0) {
    for (const failure of report.failures) process.stderr.write(`FAILED ${failure.module}: ${failure.error}\n`);
    process.exit(1);
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    process.stderr.write(`weft bench: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}
