/**
 * The monitoring bundle: every series and label the Grafana dashboard and the alert rules use is one a
 * running weftd exports (scraped from weftds in a namespace lab, one of them on the userspace data path so
 * that its metrics are there too), and the rules pass promtool's check and their unit tests.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { requireNetns } from '../../test/netns.js';
import { waitFor } from '../../test/wait.js';
import { httpGet, NetnsLab, seedNetworkConfig, waitForSubnetEnv } from '../../e2e/lab/index.js';

const MONITORING = fileURLToPath(new URL('../../../deploy/monitoring/', import.meta.url));
const RULES = join(MONITORING, 'weft-alerts.yml');
const RULE_TESTS = join(MONITORING, 'weft-alerts.test.yml');
const DASHBOARD = join(MONITORING, 'weft-dashboard.json');
const require = createRequire(import.meta.url);
const yaml = require('js-yaml') as { load(text: string): unknown };

/** Labels Prometheus adds to every scraped series, and the one series it makes itself per target. */
const TARGET_LABELS = new Set(['job', 'instance']);
const SCRAPE_SERIES = new Map([['up', new Set<string>()]]);
const PROMQL_KEYWORDS = new Set([
  'and',
  'or',
  'unless',
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'offset',
  'bool',
  'inf',
  'nan',
]);
const GROUPING = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);

interface Selectors {
  /** Metric name → the label names its matchers use. */
  metrics: Map<string, Set<string>>;
  /** Label names in by/without/on/ignoring/group_* clauses. */
  grouping: Set<string>;
}

/** The series selectors and grouping labels of a PromQL expression (Grafana's $variables allowed). */
function selectorsOf(expr: string): Selectors {
  const text = expr.replace(/\$__rate_interval|\$__interval|\$__range/g, '5m');
  const tokens = text.match(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|\{[^}]*\}|\[[^\]]*\]|[a-zA-Z_:][a-zA-Z0-9_:]*|\S/g) ?? [];
  const metrics = new Map<string, Set<string>>();
  const grouping = new Set<string>();
  const labelsIn = (block: string) => [...block.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)/g)].map((match) => match[1]);
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i];
    const next = tokens[i + 1];
    if (GROUPING.has(token) && next === '(') {
      for (i += 2; i < tokens.length && tokens[i] !== ')'; i++) if (/^[a-zA-Z_]/.test(tokens[i])) grouping.add(tokens[i]);
      continue;
    }
    // a function or an aggregation (`sum(…)`, `sum by (…) (…)`)
    if (!/^[a-zA-Z_:]/.test(token) || PROMQL_KEYWORDS.has(token) || next === '(' || next === 'by' || next === 'without') continue;
    const labels = metrics.get(token) ?? new Set<string>();
    if (next?.startsWith('{')) labelsIn(next).forEach((label) => labels.add(label));
    metrics.set(token, labels);
  }
  return { metrics, grouping };
}

/** Sample name → the label names seen on its samples, from a Prometheus text exposition. */
function exposition(text: string): Map<string, Set<string>> {
  const series = new Map<string, Set<string>>();
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? \S+$/.exec(line);
    if (match === null) continue;
    const labels = series.get(match[1]) ?? new Set<string>();
    for (const [, label] of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="/g)) labels.add(label);
    series.set(match[1], labels);
  }
  return series;
}

interface DashboardPanel {
  id?: number;
  type: string;
  title?: string;
  datasource?: { uid?: string };
  targets?: { expr?: string; datasource?: { uid?: string } }[];
  panels?: DashboardPanel[];
}

interface Dashboard {
  uid: string;
  panels: DashboardPanel[];
  templating: { list: { name: string; type: string; query?: string | { query: string } }[] };
}

function dashboard(): Dashboard {
  return JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard;
}

function panelsOf(panels: readonly DashboardPanel[]): DashboardPanel[] {
  return panels.flatMap((panel) => [panel, ...panelsOf(panel.panels ?? [])]);
}

/** Every PromQL expression the dashboard and the rules use, with where it is. */
function expressions(): { where: string; expr: string }[] {
  const board = dashboard();
  const found: { where: string; expr: string }[] = [];
  for (const panel of panelsOf(board.panels)) {
    for (const target of panel.targets ?? [])
      if (target.expr !== undefined) found.push({ where: `dashboard panel "${panel.title}"`, expr: target.expr });
  }
  for (const variable of board.templating.list) {
    const query = typeof variable.query === 'string' ? variable.query : variable.query?.query;
    const labelValues = query === undefined ? null : /^label_values\((\w+), *(\w+)\)$/.exec(query);
    if (labelValues !== null)
      found.push({ where: `dashboard variable $${variable.name}`, expr: `${labelValues[1]}{${labelValues[2]}=""}` });
  }
  const rules = yaml.load(readFileSync(RULES, 'utf8')) as { groups: { rules: { alert: string; expr: string }[] }[] };
  for (const group of rules.groups) for (const rule of group.rules) found.push({ where: `alert ${rule.alert}`, expr: rule.expr });
  return found;
}

function promtool(args: readonly string[]): { code: number | null; output: string } {
  const result = spawnSync('promtool', args, { cwd: MONITORING, encoding: 'utf8', timeout: 60_000 });
  if (result.error !== undefined && (result.error as NodeJS.ErrnoException).code === 'ENOENT') {
    assert.fail("promtool is not installed: deploy/ensure-deps.sh test installs it (Debian's prometheus package)");
  }
  return { code: result.status, output: `${result.stdout}${result.stderr}` };
}

describe('deploy/monitoring: Grafana dashboard and Prometheus alert rules', function () {
  it('reads the selectors of PromQL expressions', function () {
    const { metrics, grouping } = selectorsOf(
      'sum by (instance, direction) (rate(weft_x_total{instance=~"$instance", result!="ok"}[$__rate_interval])) > 0 and on(job) up{job="weft"} == 0 or max without (x) (b)',
    );
    assert.deepEqual(
      [...metrics].map(([name, labels]) => [name, [...labels]]),
      [
        ['weft_x_total', ['instance', 'result']],
        ['up', ['job']],
        ['b', []],
      ],
    );
    assert.deepEqual([...grouping], ['instance', 'direction', 'job', 'x']);
    assert.deepEqual([...selectorsOf('histogram_quantile(0.99, sum by (le) (rate(a_bucket[5m]))) - time()').metrics.keys()], ['a_bucket']);
  });

  it('the rules pass promtool check rules and their unit tests (promtool test rules)', function () {
    const check = promtool(['check', 'rules', RULES]);
    assert.equal(check.code, 0, check.output);
    assert.match(check.output, /SUCCESS: \d+ rules found/);
    const tests = promtool(['test', 'rules', RULE_TESTS]);
    assert.equal(tests.code, 0, tests.output);
    // every alert has a unit test that expects it to fire
    const tested = readFileSync(RULE_TESTS, 'utf8');
    const rules = yaml.load(readFileSync(RULES, 'utf8')) as {
      groups: { rules: { alert: string; labels?: { severity?: string }; annotations?: Record<string, string> }[] }[];
    };
    for (const rule of rules.groups.flatMap((group) => group.rules)) {
      assert.match(tested, new RegExp(`alertname: ${rule.alert}\\n\\s+exp_alerts:`), `${rule.alert} has a test in which it fires`);
      assert.ok(['critical', 'warning'].includes(rule.labels?.severity ?? ''), `${rule.alert} has a severity`);
      assert.ok(
        rule.annotations?.summary !== undefined && rule.annotations.description !== undefined,
        `${rule.alert} has a summary and a description`,
      );
    }
  });

  it('the dashboard is importable: unique panel ids, every query on the $datasource variable', function () {
    const board = dashboard();
    assert.equal(board.uid, 'weft-overview');
    const panels = panelsOf(board.panels);
    const ids = panels.map((panel) => panel.id);
    assert.equal(new Set(ids).size, ids.length, 'panel ids are unique');
    assert.ok(ids.every((id) => Number.isInteger(id)));
    assert.ok(board.templating.list.some((variable) => variable.name === 'datasource' && variable.type === 'datasource'));
    for (const panel of panels.filter((candidate) => candidate.type !== 'row')) {
      assert.equal(panel.datasource?.uid, '${datasource}', `panel "${panel.title}"`);
      assert.ok((panel.targets ?? []).length > 0, `panel "${panel.title}" has a query`);
      for (const target of panel.targets ?? []) assert.equal(target.datasource?.uid, '${datasource}', `panel "${panel.title}"`);
    }
  });

  describe('against a running weftd', function () {
    this.timeout(120_000);
    let lab: NetnsLab | undefined;
    let scraped: Map<string, Set<string>>;

    before(async function () {
      requireNetns(this);
      lab = await NetnsLab.create({ hosts: 3 });
      await seedNetworkConfig(lab);
      const [h1, h2] = [lab.hosts[0], lab.hosts[1]];
      // h1 forwards in userspace, so that the userspace path's metrics are there as well
      await lab.startAgent(h1, ['--healthz-port=9910', '--vxlan-userspace=always']);
      await lab.startAgent(h2, []);
      await waitForSubnetEnv(lab, h1);
      await waitForSubnetEnv(lab, h2);
      const text = await waitFor(
        async () => {
          const reply = await httpGet(lab!, h1, 'http://127.0.0.1:9910/metrics');
          return reply.status === 200 &&
            /^weft_peers\{backend="vxlan"\} 1$/m.test(reply.body) &&
            /^weft_userspace_packets_total\{/m.test(reply.body)
            ? reply.body
            : undefined;
        },
        'h1 to program h2 and report its userspace path',
        30_000,
        200,
      );
      scraped = exposition(text);
    });

    after(async function () {
      await lab?.destroy();
    });

    it('exports weft_build_info with its version, revision and Node.js version', function () {
      const labels = scraped.get('weft_build_info');
      assert.ok(labels !== undefined, 'weft_build_info is exported');
      assert.deepEqual([...labels].sort(), ['nodejs_version', 'revision', 'version']);
    });

    it('counts failed reconcile runs (weft_reconcile_failures_total, WeftReconcileFailing) until their cause is gone', async function () {
      const h3 = lab!.hosts[2];
      // flanneld's device left behind holds VNI 1 on port 8472: weftd cannot make weft.1
      const blocked = await lab!.exec(h3, `ip link add flannel.1 type vxlan id 1 dstport 8472 dev ${h3.iface} local ${h3.publicIp}`);
      assert.equal(blocked.code, 0, blocked.stderr);
      await lab!.startAgent(h3, ['--healthz-port=9910', '--vxlan-userspace=never']);
      const failures = async () => {
        const reply = await httpGet(lab!, h3, 'http://127.0.0.1:9910/metrics');
        return Number(/^weft_reconcile_failures_total (\d+)$/m.exec(reply.body)?.[1] ?? NaN);
      };
      await waitFor(async () => (await failures()) >= 2, 'failed runs to be counted', 30_000, 200);
      await lab!.exec(h3, 'ip link del flannel.1', { check: true });
      await waitFor(async () => (await lab!.exec(h3, 'ip link show weft.1')).code === 0, 'weft.1 once flannel.1 is gone', 30_000, 200);
      const settled = await failures();
      await new Promise((resolve) => setTimeout(resolve, 2500));
      assert.equal(await failures(), settled, 'no failures once the cause is gone');
    });

    it('every series and label the dashboard and the alert rules use is in its /metrics', function () {
      const used = expressions();
      assert.ok(used.length > 20, `${used.length} expressions found`);
      const problems: string[] = [];
      for (const { where, expr } of used) {
        const { metrics, grouping } = selectorsOf(expr);
        assert.ok(metrics.size > 0, `${where}: no metric in ${expr}`);
        const available = new Set(TARGET_LABELS);
        for (const [metric, labels] of metrics) {
          const exported = scraped.get(metric) ?? SCRAPE_SERIES.get(metric);
          if (exported === undefined) {
            problems.push(`${where}: ${metric} is not in weftd's /metrics`);
            continue;
          }
          exported.forEach((label) => available.add(label));
          for (const label of labels) {
            if (!exported.has(label) && !TARGET_LABELS.has(label)) problems.push(`${where}: ${metric} has no label ${label}`);
          }
        }
        for (const label of grouping) if (!available.has(label)) problems.push(`${where}: no metric of ${expr} has the label ${label}`);
      }
      assert.deepEqual(problems, []);
    });
  });
});
