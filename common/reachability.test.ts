import assert from 'node:assert/strict';
import {
  brokenPaths,
  parsePeersReport,
  pathVerdict,
  type HostProbes,
  type PeerReport,
  type PeersReport,
  type PeerState,
} from './reachability.js';

const NOW = '2026-01-01T00:00:00.000Z';

function record(lease: string, state: PeerState, fields: Partial<PeerReport> = {}): PeerReport {
  return {
    lease,
    publicIP: `192.0.2.${lease.split('.')[2]}`,
    address: lease.replace(/-24$/, ''),
    state,
    since: NOW,
    rttSeconds: null,
    lastReply: null,
    round: 10,
    smallLostSince: null,
    fullLostSince: null,
    heard: null,
    ...fields,
  };
}

function report(instance: number, peers: PeerReport[]): PeersReport {
  return {
    now: NOW,
    instance,
    source: null,
    roundSeconds: 10,
    sizes: { small: 64, full: 1450 },
    counts: { unknown: 0, ok: 0, mtu: 0, unreachable: 0 },
    peers,
  };
}

function host(lease: string, instance: number, peers: PeerReport[] | undefined): HostProbes {
  return {
    lease,
    publicIP: `192.0.2.${lease.split('.')[2]}`,
    report: peers === undefined ? undefined : report(instance, peers),
    records: new Map((peers ?? []).map((peer) => [peer.lease, peer])),
  };
}

const A = '198.18.1.0-24';
const B = '198.18.2.0-24';
const C = '198.18.3.0-24';

describe('common/reachability: which way between two hosts loses packets', function () {
  it("B hears none of A's probes since its answers stopped: A→B is lost, B→A carries", function () {
    // A→B dropped: A's probes (from round 5) go unanswered and unheard; B's probes reach A, its answers do not reach B
    const a = host(A, 1, [
      record(B, 'unreachable', { smallLostSince: 5, fullLostSince: 5, heard: { instance: 2, small: 9, full: 9, at: NOW } }),
    ]);
    const b = host(B, 2, [
      record(A, 'unreachable', { smallLostSince: 6, fullLostSince: 6, heard: { instance: 1, small: 4, full: 4, at: NOW } }),
    ]);
    const forward = pathVerdict(a, b);
    assert.equal(forward.state, 'lost');
    assert.match(
      forward.detail,
      /no packets from 192\.0\.2\.1 arrive at 192\.0\.2\.2 over the overlay: 192\.0\.2\.2 hears none of the probes 192\.0\.2\.1 sent/,
    );
    assert.equal(pathVerdict(b, a).state, 'ok');
    assert.deepEqual(
      brokenPaths([a, b]).map((path) => [path.from, path.to, path.state]),
      [[A, B, 'lost']],
    );
  });

  it('a probe run of an earlier weftd (another instance) is no evidence', function () {
    const a = host(A, 1, [record(B, 'unreachable', { smallLostSince: 5, fullLostSince: 5 })]);
    const b = host(B, 2, [record(A, 'ok', { heard: { instance: 99, small: 50, full: 50, at: NOW } })]);
    // B's round trips to A work, so both directions carry whatever A says
    assert.equal(pathVerdict(a, b).state, 'ok');
    const silent = host(B, 2, [record(A, 'unreachable', { smallLostSince: 3, heard: { instance: 99, small: 50, full: 50, at: NOW } })]);
    assert.equal(pathVerdict(a, silent).state, 'lost');
  });

  it('only the full-size probes are lost one way: MTU', function () {
    const a = host(A, 1, [record(B, 'mtu', { fullLostSince: 7, heard: { instance: 2, small: 9, full: 9, at: NOW } })]);
    const b = host(B, 2, [record(A, 'mtu', { fullLostSince: 8, heard: { instance: 1, small: 9, full: 6, at: NOW } })]);
    const forward = pathVerdict(a, b);
    assert.equal(forward.state, 'mtu');
    assert.match(
      forward.detail,
      /only small packets from 192\.0\.2\.1 arrive at 192\.0\.2\.2 over the overlay, 1450-byte packets are lost/,
    );
    assert.equal(pathVerdict(b, a).state, 'ok');
  });

  it("without the other side's report the direction is unknown, and says so", function () {
    const a = host(A, 1, [record(B, 'unreachable', { smallLostSince: 5 })]);
    const b = host(B, 2, undefined);
    const verdict = pathVerdict(a, b);
    assert.equal(verdict.state, 'lost');
    assert.match(verdict.detail, /which way is lost is unknown \(192\.0\.2\.2's \/peers could not be read\)/);
    assert.equal(pathVerdict(host(A, 1, undefined), host(C, 3, undefined)).state, 'unknown');
    assert.deepEqual(
      brokenPaths([a, b, host(C, 3, [])]).map((path) => [path.from, path.to]),
      [
        [A, B],
        [B, A],
      ].sort(),
    );
  });

  it('a peer not answered yet is not a broken path', function () {
    const a = host(A, 1, [record(B, 'unknown')]);
    const b = host(B, 2, [record(A, 'unknown')]);
    assert.deepEqual(
      brokenPaths([a, b]).map((path) => path.state),
      ['unknown', 'unknown'],
    );
  });

  it("reads an agent's /peers body as untrusted: bounded, typed, nothing that needs escaping", function () {
    const body = report(7, [record(B, 'ok', { heard: { instance: 2, small: 1, full: null, at: NOW } })]);
    assert.deepEqual(parsePeersReport(JSON.stringify(body)), body);
    assert.equal(parsePeersReport('not json'), '/peers did not answer JSON');
    assert.match(
      JSON.stringify(parsePeersReport(JSON.stringify({ ...body, peers: [{ ...body.peers[0], publicIP: '\u001b[31mx' }] }))),
      /peers\[0\] is malformed/,
    );
    assert.match(
      JSON.stringify(parsePeersReport(JSON.stringify({ ...body, peers: [{ ...body.peers[0], since: 'yesterday' }] }))),
      /peers\[0\] is malformed/,
    );
    assert.match(
      JSON.stringify(parsePeersReport(JSON.stringify({ ...body, peers: [{ ...body.peers[0], state: 'fine' }] }))),
      /peers\[0\] is malformed/,
    );
    assert.match(JSON.stringify(parsePeersReport(JSON.stringify({ ...body, instance: -1 }))), /instance/);
    assert.match(JSON.stringify(parsePeersReport(JSON.stringify({ ...body, peers: {} }))), /peers is not a list/);
  });
});
