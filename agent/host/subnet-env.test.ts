import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Prefix } from '../../common/cidr.js';
import { formatSubnetEnv, InvalidSubnetEnvError, parseSubnetEnv } from '../../common/subnet-env.js';
import { DEFAULT_SUBNET_ENV_PATH, readSubnetEnv, writeSubnetEnv } from './subnet-env.js';

const p = (text: string): Prefix => Prefix.parse(text);

describe('subnet.env text (common/subnet-env)', function () {
  it('formats IPv4 exactly as flanneld does', function () {
    const text = formatSubnetEnv({ network: p('198.18.0.0/16'), subnet: p('198.18.52.0/24'), mtu: 1450, ipMasq: true });
    assert.equal(text, 'FLANNEL_NETWORK=198.18.0.0/16\nFLANNEL_SUBNET=198.18.52.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n');
  });

  it('formats dual stack and IPv6 only', function () {
    const dual = formatSubnetEnv({
      network: p('198.18.0.0/16'),
      subnet: p('198.18.3.0/24'),
      ipv6Network: p('2001:db8:100::/48'),
      ipv6Subnet: p('2001:db8:100:3::/64'),
      mtu: 1400,
      ipMasq: false,
    });
    assert.equal(
      dual,
      'FLANNEL_NETWORK=198.18.0.0/16\nFLANNEL_SUBNET=198.18.3.1/24\nFLANNEL_IPV6_NETWORK=2001:db8:100::/48\n' +
        'FLANNEL_IPV6_SUBNET=2001:db8:100:3::1/64\nFLANNEL_MTU=1400\nFLANNEL_IPMASQ=false\n',
    );
    const v6 = formatSubnetEnv({ ipv6Network: p('2001:db8:100::/48'), ipv6Subnet: p('2001:db8:100:3::/64'), mtu: 1450, ipMasq: false });
    assert.equal(
      v6,
      'FLANNEL_IPV6_NETWORK=2001:db8:100::/48\nFLANNEL_IPV6_SUBNET=2001:db8:100:3::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n',
    );
  });

  it('refuses inconsistent content', function () {
    const bad = [
      { network: p('198.18.0.0/16'), subnet: p('198.19.1.0/24'), mtu: 1450, ipMasq: false },
      { network: p('198.18.0.0/16'), mtu: 1450, ipMasq: false },
      { network: p('2001:db8:100::/48'), subnet: p('2001:db8:100:1::/64'), mtu: 1450, ipMasq: false },
      { mtu: 1450, ipMasq: false },
      { network: p('198.18.0.0/16'), subnet: p('198.18.1.0/24'), mtu: 20, ipMasq: false },
      { network: p('198.18.0.0/16'), subnet: p('198.18.1.7/32'), mtu: 1450, ipMasq: false },
    ];
    for (const content of bad) {
      assert.throws(
        () => formatSubnetEnv(content),
        (err: unknown) => err instanceof InvalidSubnetEnvError && err.code === 'WEFT_INVALID_SUBNET_ENV',
      );
    }
  });

  it('parses what it formats, giving the lease network (.0) for FLANNEL_SUBNET', function () {
    const content = {
      network: p('198.18.0.0/16'),
      subnet: p('198.18.52.0/24'),
      ipv6Network: p('2001:db8:100::/48'),
      ipv6Subnet: p('2001:db8:100:34::/64'),
      mtu: 1450,
      ipMasq: true,
    };
    const env = parseSubnetEnv(formatSubnetEnv(content));
    assert.equal(env.network?.toString(), '198.18.0.0/16');
    assert.equal(env.subnet?.toString(), '198.18.52.0/24');
    assert.equal(env.ipv6Network?.toString(), '2001:db8:100::/48');
    assert.equal(env.ipv6Subnet?.toString(), '2001:db8:100:34::/64');
    assert.equal(env.mtu, 1450);
    assert.equal(env.ipMasq, true);
  });

  it('is tolerant: comments, blank lines, export, quotes, CRLF, unknown variables, last assignment wins', function () {
    const text = [
      '# written by hand',
      '',
      'export FLANNEL_NETWORK="198.18.0.0/16"',
      "FLANNEL_SUBNET='198.18.9.1/24'\r",
      'SOMETHING_ELSE=whatever goes',
      '   FLANNEL_MTU=1400  ',
      'FLANNEL_IPMASQ=True',
      'FLANNEL_MTU=1450',
    ].join('\n');
    const env = parseSubnetEnv(text);
    assert.deepEqual(
      { network: env.network?.toString(), subnet: env.subnet?.toString(), mtu: env.mtu, ipMasq: env.ipMasq, v6: env.ipv6Subnet },
      { network: '198.18.0.0/16', subnet: '198.18.9.0/24', mtu: 1450, ipMasq: true, v6: undefined },
    );
    assert.deepEqual(parseSubnetEnv(''), {
      network: undefined,
      subnet: undefined,
      ipv6Network: undefined,
      ipv6Subnet: undefined,
      mtu: undefined,
      ipMasq: undefined,
    });
  });

  it('names the line of a malformed file', function () {
    const cases: [string, number, RegExp][] = [
      ['FLANNEL_NETWORK=198.18.0.0/16\n\nFLANNEL_SUBNET=198.18.300.1/24\n', 3, /line 3: "FLANNEL_SUBNET=198\.18\.300\.1\/24"/],
      ['FLANNEL_SUBNET=2001:db8:100:1::1/64\n', 1, /not an IPv4 prefix/],
      ['FLANNEL_IPV6_SUBNET=198.18.1.1/24\n', 1, /not an IPv6 prefix/],
      ['FLANNEL_NETWORK=198.18.0.1/16\n', 1, /host bits/],
      ['# ok\nFLANNEL_MTU=fifteen\n', 2, /MTU/],
      ['FLANNEL_MTU=1450\nFLANNEL_IPMASQ=yes\n', 2, /true or false/],
      ['FLANNEL_MTU=1450\nthis is not shell\n', 2, /not a NAME=value/],
      ['FLANNEL_IPMASQ=constructor\n', 1, /true or false/],
    ];
    for (const [text, line, message] of cases) {
      assert.throws(
        () => parseSubnetEnv(text, '/run/flannel/subnet.env'),
        (err: unknown) =>
          err instanceof InvalidSubnetEnvError &&
          err.line === line &&
          message.test(err.message) &&
          err.message.startsWith(`/run/flannel/subnet.env line ${line}:`),
        text,
      );
    }
  });
});

describe('subnet.env file (agent/host/subnet-env)', function () {
  let dir: string;
  const content = { network: p('198.18.0.0/16'), subnet: p('198.18.52.0/24'), mtu: 1450, ipMasq: false };

  beforeEach(async function () {
    dir = await mkdtemp(join(tmpdir(), 'weft-subnet-env-'));
  });

  afterEach(async function () {
    await rm(dir, { recursive: true, force: true });
  });

  it("defaults to flannel's path", function () {
    assert.equal(DEFAULT_SUBNET_ENV_PATH, '/run/flannel/subnet.env');
  });

  it('creates the directory, writes mode 0644 and reads the subnet back as a hint', async function () {
    const path = join(dir, 'run', 'flannel', 'subnet.env');
    await writeSubnetEnv(path, content);
    assert.equal(
      await readFile(path, 'utf8'),
      'FLANNEL_NETWORK=198.18.0.0/16\nFLANNEL_SUBNET=198.18.52.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n',
    );
    assert.equal((await stat(path)).mode & 0o777, 0o644);
    const env = await readSubnetEnv(path);
    assert.equal(env?.subnet?.toString(), '198.18.52.0/24');
    assert.deepEqual(await readdir(join(dir, 'run', 'flannel')), ['subnet.env']);
  });

  it('returns undefined for a missing file and a typed error naming path and line for a bad one', async function () {
    assert.equal(await readSubnetEnv(join(dir, 'nope.env')), undefined);
    const path = join(dir, 'subnet.env');
    await writeFile(path, 'FLANNEL_NETWORK=198.18.0.0/16\nFLANNEL_SUBNET=banana\n');
    await assert.rejects(
      readSubnetEnv(path),
      (err: unknown) => err instanceof InvalidSubnetEnvError && err.line === 2 && err.message.includes(`${path} line 2`),
    );
  });

  it('leaves the old file and no temp file behind when the content is invalid', async function () {
    const path = join(dir, 'subnet.env');
    await writeSubnetEnv(path, content);
    await assert.rejects(writeSubnetEnv(path, { ...content, mtu: 0 }), InvalidSubnetEnvError);
    assert.equal((await readSubnetEnv(path))?.mtu, 1450);
    assert.deepEqual(await readdir(dir), ['subnet.env']);
  });

  it('replaces the file atomically: a concurrent reader only ever sees a whole old or new file', async function () {
    const path = join(dir, 'subnet.env');
    const variants = [content, { ...content, subnet: p('198.18.53.0/24'), mtu: 1400, ipMasq: true }];
    const texts = new Set(variants.map((v) => formatSubnetEnv(v)));
    await writeSubnetEnv(path, variants[0]);
    let writing = true;
    let reads = 0;
    const reader = (async () => {
      while (writing) {
        const text = await readFile(path, 'utf8');
        assert.ok(texts.has(text), `partial read: ${JSON.stringify(text)}`);
        reads++;
      }
    })();
    const writers: Promise<void>[] = [];
    for (let i = 0; i < 100; i++) writers.push(writeSubnetEnv(path, variants[i % 2]));
    await Promise.all(writers);
    writing = false;
    await reader;
    assert.ok(reads > 0);
    assert.deepEqual(await readdir(dir), ['subnet.env']);
  });
});
