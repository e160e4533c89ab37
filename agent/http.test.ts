import assert from 'node:assert/strict';
import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { Gauge } from 'prom-client';
import { WeftError } from '../common/errors.js';
import { HealthServer, MAX_CONNECTIONS, MAX_HEADER_BYTES, Readiness, type ReadinessReport } from './http.js';
import { WeftMetrics } from './metrics.js';
import { createLogger } from './log.js';
import { openIcmpSocket } from './health/icmp-socket.js';
import { PeerProber } from './health/prober.js';
import { parsePeersReport } from '../common/reachability.js';

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One request on a fresh connection (no keep-alive pool), so that tests see the server's own behaviour. */
function call(
  server: HealthServer,
  path: string,
  method = 'GET',
  options: { headers?: Record<string, string>; body?: string } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: server.host, port: server.port, path, method, agent: false, headers: options.headers ?? {} }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

describe('HTTP endpoint (/healthz, /readyz, /metrics)', function () {
  let server: HealthServer | undefined;
  let readiness: Readiness;
  let metrics: WeftMetrics;

  beforeEach(async function () {
    readiness = new Readiness();
    metrics = new WeftMetrics();
    server = await HealthServer.listen({ host: '127.0.0.1', port: 0, readiness, metrics });
  });

  afterEach(async function () {
    await server?.destroy();
    server = undefined;
  });

  it('answers /healthz with 200 "ok" on an ephemeral port', async function () {
    assert.ok(server!.port > 0);
    assert.equal(server!.url, `http://127.0.0.1:${server!.port}`);
    const reply = await call(server!, '/healthz');
    assert.equal(reply.status, 200);
    assert.equal(reply.body, 'ok');
    const head = await call(server!, '/healthz', 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.body, '');
  });

  it('answers /readyz 503 with what is not ready, then 200 once everything is, with info fields', async function () {
    readiness.setInfo('backend', 'vxlan');
    readiness.setInfo('userspace', false);
    let reply = await call(server!, '/readyz');
    assert.equal(reply.status, 503);
    assert.equal(reply.headers['content-type'], 'application/json');
    let report = JSON.parse(reply.body) as ReadinessReport;
    assert.equal(report.ready, false);
    assert.deepEqual(report.notReady, ['lease', 'dataplane', 'subnetEnv']);
    assert.deepEqual(report.info, { backend: 'vxlan', userspace: false });

    readiness.setReady('lease', true, 'leased 198.18.5.0/24');
    readiness.setReady('subnetEnv', true);
    reply = await call(server!, '/readyz');
    report = JSON.parse(reply.body) as ReadinessReport;
    assert.equal(reply.status, 503);
    assert.deepEqual(report.notReady, ['dataplane']);
    assert.equal(report.checks.lease.reason, 'leased 198.18.5.0/24');

    readiness.setReady('dataplane', true);
    readiness.setInfo('userspace', undefined);
    reply = await call(server!, '/readyz');
    report = JSON.parse(reply.body) as ReadinessReport;
    assert.equal(reply.status, 200);
    assert.deepEqual(
      { ready: report.ready, notReady: report.notReady, info: report.info },
      { ready: true, notReady: [], info: { backend: 'vxlan' } },
    );
    assert.equal(readiness.isReady(), true);

    readiness.setReady('lease', false, 'lease lost');
    reply = await call(server!, '/readyz');
    assert.equal(reply.status, 503);
    assert.deepEqual((JSON.parse(reply.body) as ReadinessReport).notReady, ['lease']);
    assert.throws(() => readiness.setReady('bogus' as 'lease', true), RangeError);
  });

  it('serves /metrics in the Prometheus text format', async function () {
    metrics.peers.set({ backend: 'host-gw' }, 2);
    const reply = await call(server!, '/metrics');
    assert.equal(reply.status, 200);
    assert.match(String(reply.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    assert.match(reply.body, /^weft_peers\{backend="host-gw"\} 2$/m);
    assert.match(reply.body, /^process_resident_memory_bytes \d/m);
  });

  it('answers 404 for unknown paths and 405 for other methods', async function () {
    assert.equal((await call(server!, '/nope')).status, 404);
    const post = await call(server!, '/healthz', 'POST');
    assert.equal(post.status, 405);
    assert.equal(post.headers.allow, 'GET, HEAD');
    assert.equal((await call(server!, '/healthz?verbose=1')).status, 200);
  });

  it('answers 500 when collecting metrics fails, and keeps serving', async function () {
    new Gauge({
      name: 'test_broken',
      help: 'fails',
      registers: [metrics.registry],
      collect() {
        throw new Error('collector broke');
      },
    });
    assert.equal((await call(server!, '/metrics')).status, 500);
    assert.equal((await call(server!, '/healthz')).status, 200);
  });

  it('close() stops accepting, lets a request in flight finish, and resolves after it', async function () {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let collecting!: () => void;
    const started = new Promise<void>((resolve) => (collecting = resolve));
    new Gauge({
      name: 'test_slow',
      help: 'waits for the test',
      registers: [metrics.registry],
      async collect() {
        collecting();
        await gate;
        this.set(1);
      },
    });
    const inFlight = call(server!, '/metrics');
    await started;
    let closed = false;
    const closing = server!.close().then(() => (closed = true));
    await assert.rejects(call(server!, '/healthz'), (err: NodeJS.ErrnoException) => err.code === 'ECONNREFUSED');
    assert.equal(closed, false, 'still draining');
    release();
    const reply = await inFlight;
    assert.equal(reply.status, 200);
    assert.match(reply.body, /^test_slow 1$/m);
    assert.equal(reply.headers.connection, 'close');
    await closing;
    assert.equal(closed, true);
    await server!.close(); // idempotent
  });

  it('close() does not wait for idle keep-alive connections; the drain timeout ends stuck requests', async function () {
    // a keep-alive client leaves an idle connection behind
    const reply = await fetch(`${server!.url}/healthz`);
    assert.equal(await reply.text(), 'ok');
    const t0 = Date.now();
    await server!.close();
    assert.ok(Date.now() - t0 < 1000, 'closed without waiting for the idle connection');

    const stuckMetrics = new WeftMetrics({ defaultMetrics: false });
    new Gauge({
      name: 'test_stuck',
      help: 'never answers',
      registers: [stuckMetrics.registry],
      collect: () => new Promise<void>(() => {}),
    });
    const slow = await HealthServer.listen({ host: '127.0.0.1', port: 0, readiness, metrics: stuckMetrics, drainTimeoutMs: 200 });
    const stuck = call(slow, '/metrics').catch((err: NodeJS.ErrnoException) => err.code);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const t1 = Date.now();
    await slow.close();
    assert.ok(Date.now() - t1 < 2000);
    assert.equal(await stuck, 'ECONNRESET');
  });

  it(`serves at most ${MAX_CONNECTIONS} connections at a time, and takes requests again once some close`, async function () {
    const idle: Socket[] = [];
    try {
      for (let i = 0; i < MAX_CONNECTIONS; i++) {
        idle.push(
          await new Promise<Socket>((resolve, reject) => {
            const socket = connect(server!.port, server!.host, () => resolve(socket));
            socket.on('error', reject);
          }),
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
      await assert.rejects(call(server!, '/healthz'), /ECONNRESET|socket hang up/);
      for (const socket of idle.splice(0, 8)) socket.destroy();
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal((await call(server!, '/healthz')).status, 200);
    } finally {
      for (const socket of idle) socket.destroy();
    }
  });

  it('refuses request heads over the size limit (431) and requests with a body (413)', async function () {
    assert.equal((await call(server!, '/healthz', 'GET', { headers: { 'x-filler': 'a'.repeat(MAX_HEADER_BYTES) } })).status, 431);
    assert.equal((await call(server!, '/healthz', 'GET', { headers: { 'x-filler': 'a'.repeat(MAX_HEADER_BYTES / 2) } })).status, 200);
    const withBody = await call(server!, '/readyz', 'GET', { headers: { 'content-length': '100000' }, body: 'x'.repeat(100_000) });
    assert.equal(withBody.status, 413);
    assert.equal(withBody.headers.connection, 'close');
    assert.equal((await call(server!, '/healthz')).status, 200);
  });

  it('reports a port in use as a typed error', async function () {
    await assert.rejects(
      HealthServer.listen({ host: '127.0.0.1', port: server!.port, readiness, metrics }),
      (err: unknown) =>
        err instanceof WeftError &&
        err.code === 'WEFT_HTTP_LISTEN' &&
        err.message.startsWith(`cannot listen on 127.0.0.1:${server!.port}:`),
    );
  });

  it("answers /peers with the prober's report, filtered by ?state=problem and ?lease=; 404 while probing is off; 400 for a bad query", async function () {
    assert.equal((await call(server!, '/peers')).status, 404);
    // a prober with no source address sends nothing: its peers stay unknown
    const prober = new PeerProber({
      transport: openIcmpSocket(),
      log: createLogger('silent'),
      intervalMs: 10_000,
      maxProbesPerSecond: 500,
    });
    try {
      prober.setPeers([
        { lease: '198.18.6.0-24', publicIP: '192.0.2.12', address: '198.18.6.0' },
        { lease: '198.18.7.0-24', publicIP: '192.0.2.13', address: '198.18.7.0' },
      ]);
      await server!.close();
      server = await HealthServer.listen({ host: '127.0.0.1', port: 0, readiness, metrics, peers: (filter) => prober.report(filter) });
      const all = await call(server, '/peers');
      assert.equal(all.status, 200);
      assert.equal(all.headers['content-type'], 'application/json');
      const report = parsePeersReport(all.body);
      assert.ok(typeof report !== 'string', JSON.stringify(report));
      assert.deepEqual(
        report.peers.map((peer) => [peer.lease, peer.state]),
        [
          ['198.18.6.0-24', 'unknown'],
          ['198.18.7.0-24', 'unknown'],
        ],
      );
      assert.deepEqual(report.counts, { unknown: 2, ok: 0, mtu: 0, unreachable: 0 });
      assert.equal(report.source, null);
      const named = parsePeersReport((await call(server, '/peers?lease=198.18.7.0-24,198.18.99.0-24')).body);
      assert.deepEqual(typeof named === 'string' ? named : named.peers.map((peer) => peer.lease), ['198.18.7.0-24']);
      const problems = parsePeersReport((await call(server, '/peers?state=problem')).body);
      assert.equal(typeof problems === 'string' ? problems : problems.peers.length, 2, 'unknown is not ok');
      assert.equal((await call(server, '/peers?state=ok')).status, 400);
      assert.equal((await call(server, '/peers?bogus=1')).status, 400);
      assert.equal((await call(server, `/peers?lease=${'a'.repeat(101)}`)).status, 400);
    } finally {
      prober.stop();
    }
  });
});
