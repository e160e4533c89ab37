import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { register as globalRegistry } from 'prom-client';
import { WeftMetrics } from './metrics.js';

describe('WeftMetrics', function () {
  it('exports every weft metric with HELP and TYPE, plus process metrics, on its own registry', async function () {
    const metrics = new WeftMetrics();
    metrics.peers.set({ backend: 'vxlan' }, 3);
    metrics.reconcileRuns.inc({ trigger: 'lease' });
    metrics.netlinkOperations.inc({ op: 'route_add', result: 'ok' }, 2);
    metrics.netlinkOperations.inc({ op: 'neigh_add', result: 'EEXIST' });
    metrics.watchResyncs.inc();
    metrics.leaseExpiry.set(1_700_000_000);
    metrics.etcdReachable.set(1);
    metrics.reconcileDuration.observe(0.02);
    const text = await metrics.text();
    for (const [name, type] of [
      ['weft_peers', 'gauge'],
      ['weft_reconcile_runs_total', 'counter'],
      ['weft_reconcile_duration_seconds', 'histogram'],
      ['weft_netlink_operations_total', 'counter'],
      ['weft_watch_resyncs_total', 'counter'],
      ['weft_lease_expiry_timestamp_seconds', 'gauge'],
      ['weft_etcd_reachable', 'gauge'],
      ['weft_reconcile_failures_total', 'counter'],
    ]) {
      assert.match(text, new RegExp(`^# HELP ${name} \\S`, 'm'), name);
      assert.match(text, new RegExp(`^# TYPE ${name} ${type}$`, 'm'), name);
    }
    assert.match(text, /^weft_peers\{backend="vxlan"\} 3$/m);
    assert.match(text, /^weft_reconcile_runs_total\{trigger="lease"\} 1$/m);
    assert.match(text, /^weft_netlink_operations_total\{op="route_add",result="ok"\} 2$/m);
    assert.match(text, /^weft_netlink_operations_total\{op="neigh_add",result="EEXIST"\} 1$/m);
    assert.match(text, /^weft_watch_resyncs_total 1$/m);
    assert.match(text, /^weft_lease_expiry_timestamp_seconds 1700000000$/m);
    assert.match(text, /^weft_etcd_reachable 1$/m);
    assert.match(text, /^weft_reconcile_duration_seconds_bucket\{le="0.025"\} 1$/m);
    assert.match(text, /^process_cpu_user_seconds_total \d/m);
    assert.match(text, /^nodejs_heap_size_used_bytes \d/m);
    assert.equal(await globalRegistry.getSingleMetricAsString('weft_peers').catch(() => ''), '', 'nothing on the global registry');
  });

  it('says which build runs: weft_build_info with the version, commit and Node.js version npm run build recorded', async function () {
    const recorded = JSON.parse(readFileSync(new URL('../build-info.json', import.meta.url), 'utf8')) as {
      version: string;
      revision: string;
    };
    const version = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
    assert.equal(recorded.version, version);
    assert.match(recorded.revision, /^([0-9a-f]{40}(-dirty)?|unknown)$/);
    const text = await new WeftMetrics({ defaultMetrics: false }).text();
    assert.match(text, /^# TYPE weft_build_info gauge$/m);
    const line = `weft_build_info{version="${version}",revision="${recorded.revision}",nodejs_version="${process.version}"} 1`;
    assert.ok(text.split('\n').includes(line), `${line} in\n${text}`);
  });

  it('lets two instances live side by side and can leave out default metrics', async function () {
    const a = new WeftMetrics({ defaultMetrics: false });
    const b = new WeftMetrics({ defaultMetrics: false });
    a.watchResyncs.inc();
    assert.match(await a.text(), /^weft_watch_resyncs_total 1$/m);
    assert.match(await b.text(), /^weft_watch_resyncs_total 0$/m);
    assert.doesNotMatch(await a.text(), /process_cpu/);
    assert.match(a.contentType, /^text\/plain; version=0\.0\.4/);
  });

  it('times reconcile runs, also when they throw', async function () {
    const metrics = new WeftMetrics({ defaultMetrics: false });
    assert.equal(await metrics.timeReconcile('timer', async () => 7), 7);
    await assert.rejects(
      metrics.timeReconcile('kernel', async () => Promise.reject(new Error('no'))),
      /no/,
    );
    const text = await metrics.text();
    assert.match(text, /^weft_reconcile_runs_total\{trigger="timer"\} 1$/m);
    assert.match(text, /^weft_reconcile_runs_total\{trigger="kernel"\} 1$/m);
    assert.match(text, /^weft_reconcile_duration_seconds_count 2$/m);
  });

  it('reports the userspace data path from its source, one fetch per scrape, every drop reason listed', async function () {
    const metrics = new WeftMetrics({ defaultMetrics: false });
    assert.doesNotMatch(await metrics.text(), /^weft_userspace_packets_total\{/m, 'nothing before a source is set');
    let fetches = 0;
    let packets = 10;
    metrics.dataPath.set({ backend: 'vxlan', path: 'userspace' }, 1);
    metrics.setUserspaceSource(async () => {
      fetches++;
      const tx = { packets, bytes: packets * 100, drops: { no_peer: 2 } };
      const rx = { packets: 5, bytes: 500, drops: { unknown_peer: 3, inner_src: 1 } };
      return { tx, rx, restarts: 1 };
    });
    const text = await metrics.text();
    assert.equal(fetches, 1);
    assert.match(text, /^weft_data_path\{backend="vxlan",path="userspace"\} 1$/m);
    assert.match(text, /^weft_userspace_packets_total\{direction="tx"\} 10$/m);
    assert.match(text, /^weft_userspace_bytes_total\{direction="rx"\} 500$/m);
    assert.match(text, /^weft_userspace_dropped_packets_total\{direction="tx",reason="no_peer"\} 2$/m);
    assert.match(text, /^weft_userspace_dropped_packets_total\{direction="rx",reason="unknown_peer"\} 3$/m);
    assert.match(text, /^weft_userspace_dropped_packets_total\{direction="rx",reason="inner_src"\} 1$/m);
    assert.match(text, /^weft_userspace_dropped_packets_total\{direction="rx",reason="vni"\} 0$/m, 'reasons not seen yet read 0');
    assert.match(text, /^weft_userspace_worker_restarts_total 1$/m);
    assert.match(text, /^# TYPE weft_userspace_dropped_packets_total counter$/m);
    packets = 25;
    assert.match(await metrics.text(), /^weft_userspace_packets_total\{direction="tx"\} 25$/m, 'a later scrape fetches again');
    assert.equal(fetches, 2);
    metrics.setUserspaceSource(async () => Promise.reject(new Error('worker gone')));
    assert.match(
      await metrics.text(),
      /^weft_userspace_packets_total\{direction="tx"\} 25$/m,
      'a failing source keeps the last figures and does not break the scrape',
    );
  });
});
