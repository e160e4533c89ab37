/**
 * The Vagrant driver against a fake `vagrant` on PATH that records every command and answers from rules
 * (fixtures/fake-vagrant.ts), and the Vagrantfile against the real `vagrant validate` when it is installed.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildInfo } from '../../agent/build-info.js';
import { requireOrSkip } from '../../test/requirements.js';
import {
  prepareVagrantCluster,
  VagrantDriver,
  VagrantSetupError,
  VAGRANT_DIR,
  machineReadableError,
  parseVagrantStatus,
} from './driver.js';

const FAKE = fileURLToPath(new URL('./fixtures/fake-vagrant.js', import.meta.url));
const REPO = fileURLToPath(new URL('../../..', import.meta.url));
const INSTALLED_BUILD_INFO = '/usr/local/lib/weft/dist/build-info.json';
const CONFIG = '{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan"}}';

function addrJson(ifname: string, address: string): object {
  return { ifname, addr_info: [{ family: 'inet', local: address, prefixlen: 24 }] };
}

interface Call {
  argv: string[];
  cwd: string;
  vagrantCwd: string | undefined;
}

interface Rule {
  match: string;
  stdout?: string;
  stdoutFile?: string;
  code?: number;
  touch?: string;
  content?: string;
  agent?: { pid: number; output?: string };
  background?: { pid: number; output?: string };
}

/** `vagrant status --machine-readable` for these machine states. */
function status(states: Record<string, string>): string {
  return `${Object.entries(states)
    .map(([vm, state]) => `1700000000,${vm},state,${state}`)
    .join('\n')}\n1700000000,,ui,info,Current machine states:\n`;
}

describe('e2e/vagrant: the driver over a fake vagrant', function () {
  this.timeout(30_000);
  let dir: string;
  let savedPath: string | undefined;
  const savedEnv: Record<string, string | undefined> = {};

  function calls(): Call[] {
    return readFileSync(join(dir, 'calls.log'), 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Call);
  }

  /** The remote commands (`vagrant ssh <vm> -c <command>`) sent to `vm`. */
  function remote(vm: string): string[] {
    return calls()
      .filter((call) => call.argv[0] === 'ssh' && call.argv[1] === vm)
      .map((call) => call.argv[3]);
  }

  let rules: Rule[];

  /** Puts `first` before the test's standard rules (the first matching rule answers). */
  function answer(...first: Rule[]): void {
    writeFileSync(join(dir, 'rules.json'), JSON.stringify([...first, ...rules]));
  }

  beforeEach(function () {
    dir = mkdtempSync(join(tmpdir(), 'weft-fake-vagrant-'));
    const bin = join(dir, 'bin');
    mkdirSync(bin);
    writeFileSync(join(bin, 'vagrant'), `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(FAKE)} "$@"\n`);
    chmodSync(join(bin, 'vagrant'), 0o755);
    // a sudo that runs its command, to evaluate recorded remote commands locally
    writeFileSync(join(bin, 'sudo'), '#!/bin/sh\n[ "$1" = -n ] && shift\nexec "$@"\n');
    chmodSync(join(bin, 'sudo'), 0o755);
    rules = [
      {
        match: '^status --machine-readable$',
        stdout: [
          '1700000000,weft1,metadata,provider,libvirt',
          '1700000000,weft1,provider-name,libvirt',
          '1700000000,weft1,state,running',
          '1700000000,weft2,state,running',
          '1700000000,weft3,state,shutoff',
          '1700000000,,ui,info,Current machine states:',
          '',
        ].join('\n'),
      },
      {
        match: '^ssh weft1 -c ip -j -4 addr show$',
        stdout: JSON.stringify([addrJson('lo', '127.0.0.1'), addrJson('eth0', '203.0.113.15'), addrJson('eth1', '192.0.2.11')]),
      },
      {
        match: '^ssh weft2 -c ip -j -4 addr show$',
        stdout: JSON.stringify([addrJson('lo', '127.0.0.1'), addrJson('eth0', '203.0.113.15'), addrJson('eth1', '192.0.2.12')]),
      },
      { match: '^ssh weft1 .*systemctl is-active weftd', stdout: 'active\n' },
      { match: '^ssh weft2 .*systemctl is-active weftd', stdout: 'inactive\n' },
      { match: 'etcdctl.* get --print-value-only', stdout: `${CONFIG}\n` },
      {
        match: 'cat /run/weft-e2e/',
        stdout: 'FLANNEL_NETWORK=198.18.0.0/16\nFLANNEL_SUBNET=198.18.5.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n',
      },
      { match: 'WEFT_AGENT_PID', agent: { pid: 4242, output: '{"msg":"ready"}' } },
      { match: 'WEFT_BG_PID', background: { pid: 77, output: '64 bytes from 198.18.6.2: icmp_seq=1\n' } },
      { match: 'kill -s (\\w+) (\\d+)', touch: join(dir, 'killed-$2'), content: '$1' },
    ];
    writeFileSync(join(dir, 'rules.json'), JSON.stringify(rules));
    writeFileSync(join(dir, 'calls.log'), '');
    savedPath = process.env.PATH;
    for (const name of ['FAKE_VAGRANT_LOG', 'FAKE_VAGRANT_RULES', 'WEFT_VAGRANT_SUBNET', 'WEFT_VAGRANT_SYNC'])
      savedEnv[name] = process.env[name];
    delete process.env.WEFT_VAGRANT_SUBNET;
    delete process.env.WEFT_VAGRANT_SYNC;
    process.env.PATH = `${bin}:${process.env.PATH ?? ''}`;
    process.env.FAKE_VAGRANT_LOG = join(dir, 'calls.log');
    process.env.FAKE_VAGRANT_RULES = join(dir, 'rules.json');
  });

  afterEach(function () {
    process.env.PATH = savedPath;
    for (const [name, value] of Object.entries(savedEnv)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('parses vagrant status --machine-readable', function () {
    assert.deepEqual(parseVagrantStatus('1,weft1,state,running\n1,weft2,state,poweroff\n1,,ui,info,x\n'), [
      { name: 'weft1', state: 'running' },
      { name: 'weft2', state: 'poweroff' },
    ]);
    assert.equal(
      machineReadableError(
        '1,,ui,error,No usable default provider could be found for your system.\\n\\nVagrant relies%!(VAGRANT_COMMA) …\n',
      ),
      'No usable default provider could be found for your system.',
    );
  });

  it('finds the running VMs and their private addresses, and takes them over', async function () {
    const driver = await VagrantDriver.create({ runId: 'abc' });
    try {
      assert.deepEqual(
        driver.hosts.map((host) => [host.name, host.publicIp, host.iface]),
        [
          ['h1', '192.0.2.11', 'eth1'],
          ['h2', '192.0.2.12', 'eth1'],
        ],
      );
      assert.equal(driver.etcdEndpoint, 'http://192.0.2.11:2379');
      assert.equal(driver.etcdHost.publicIp, '192.0.2.11');
      assert.equal(driver.subnetFile('h2'), '/run/weft-e2e/abc/subnet.env');
      for (const call of calls()) {
        assert.equal(call.cwd, VAGRANT_DIR.replace(/\/$/, ''));
        assert.equal(call.vagrantCwd, VAGRANT_DIR);
      }
      for (const vm of ['weft1', 'weft2']) {
        const takeover = remote(vm).find((command) => command.includes('systemctl stop weftd.service'));
        assert.ok(takeover, `${vm}: weftd.service stopped`);
        assert.match(takeover, /^sudo -n sh -c /);
        assert.match(takeover, /ip link del/);
        assert.match(takeover, /WEFT-FORWARD/);
      }
      assert.ok(
        remote('weft1').some((command) => command.includes('del --prefix /coreos.com/network/')),
        'the network keys are cleared',
      );
      assert.equal(remote('weft3').length, 0, 'a VM that is not running is left alone');
    } finally {
      await driver.destroy();
    }
  });

  it('runs commands as root with their environment and input, quoted so that the remote shell sees them as written', async function () {
    const driver = await VagrantDriver.create({ runId: 'q1' });
    try {
      const command = `cat; printf '<%s>' "a b" 'it'"'"'s' "$WEFT_X"`;
      await driver.exec('h1', command, { env: { WEFT_X: "x 'y'" }, input: 'line 1\nline "2"\n' });
      const sent = remote('weft1').at(-1)!;
      assert.match(sent, /\| sudo -n env /);
      // what the VM's shell would run, run here (the fake sudo in PATH just runs its command)
      const evaluated = spawnSync('sh', ['-c', sent], { encoding: 'utf8', env: { ...process.env } });
      assert.equal(evaluated.stdout, `line 1\nline "2"\n<a b><it's><x 'y'>`);
      assert.equal(evaluated.status, 0);
    } finally {
      await driver.destroy();
    }
  });

  it("starts, logs and stops weftd with the lab's defaults, and builds containers from subnet.env", async function () {
    const driver = await VagrantDriver.create({ runId: 'ag1' });
    try {
      const agent = await driver.startAgent('h2', ['--healthz-port=9910'], { WEFTD_LOG_LEVEL: 'debug' });
      assert.equal(agent.pid, 4242);
      assert.deepEqual(agent.args, [
        '--etcd-endpoints=http://192.0.2.11:2379',
        '--subnet-file=/run/weft-e2e/ag1/subnet.env',
        '--iface=192.0.2.12',
        '--healthz-port=9910',
      ]);
      const started = remote('weft2').find((command) => command.includes('WEFT_AGENT_PID'))!;
      assert.match(
        started,
        /weftd --etcd-endpoints=http:\/\/192\.0\.2\.11:2379 --subnet-file=\/run\/weft-e2e\/ag1\/subnet\.env --iface=192\.0\.2\.12 --healthz-port=9910/,
      );
      assert.match(started, /env WEFTD_LOG_LEVEL=debug weftd/);
      await assert.rejects(driver.startAgent('h2'), /h2 \(weft2\) already runs weftd \(pid 4242\)/);
      assert.deepEqual(await driver.stopAgent('h2'), { code: null, signal: 'SIGTERM' });
      assert.match(agent.log(), /weftd --etcd-endpoints=.*\n\{"msg":"ready"\}\n/);
      assert.equal(driver.agent('h2'), agent);

      assert.deepEqual(await driver.readSubnetEnv('h1').then((env) => env?.subnet), '198.18.5.1/24');
      const [c1, c2] = await driver.addContainers('h1', 2);
      assert.deepEqual([c1.name, c1.ip, c2.ip], ['h1c1', '198.18.5.2', '198.18.5.3']);
      const built = remote('weft1').find((command) => command.includes('ip netns add wvag1-h1c1'))!;
      const batch = Buffer.from(/printf %s '?([A-Za-z0-9+/=]+)'? \| base64 -d/.exec(built)![1], 'base64').toString();
      assert.match(batch, /^link add cag1h1 type bridge\nlink set cag1h1 mtu 1450\naddr add 198\.18\.5\.1\/24 dev cag1h1\n/);
      assert.match(batch, /link add vag1h1c2 mtu 1450 type veth peer name eag1h1c2 mtu 1450 netns wvag1-h1c2\n/);
      await c1.exec('ping -c 1 198.18.6.2');
      assert.equal(remote('weft1').at(-1), "sudo -n ip netns exec wvag1-h1c1 sh -c 'ping -c 1 198.18.6.2'");

      const ping = driver.background(c2, 'ping 198.18.6.2');
      await new Promise((resolve) => setTimeout(resolve, 300));
      const result = await ping.stop();
      assert.match(result.stdout, /icmp_seq=1/);
      assert.ok(
        remote('weft1').some((command) => command.includes('kill -s INT 77')),
        'SIGINT went to the remote ping',
      );

      assert.equal(
        driver.weftctlCommand(['status', '--healthz-port=9910']),
        'weftctl --etcd-endpoints=http://192.0.2.11:2379 status --healthz-port=9910',
      );
      await driver.etcdctl(['put', '/coreos.com/network/config', CONFIG]);
      assert.equal(
        remote('weft1').at(-1),
        `sudo -n env ETCDCTL_API=3 sh -c 'etcdctl --endpoints=http://192.0.2.11:2379 put /coreos.com/network/config '\\''${CONFIG}'\\'''`,
      );
    } finally {
      await driver.destroy();
    }
  });

  it('gives the VMs back on destroy: agents killed, containers and weft state removed, config and weftd.service restored', async function () {
    const driver = await VagrantDriver.create({ runId: 'd1' });
    await driver.startAgent('h1');
    await driver.destroy();
    const weft1 = remote('weft1');
    const cleanup = weft1.find((command) => command.includes('kill -s KILL 4242'));
    assert.ok(cleanup, 'the running agent is killed');
    assert.match(cleanup, /ip netns list/);
    assert.match(cleanup, /rm -rf \/run\/weft-e2e\/d1/);
    assert.ok(
      weft1.some((command) => command.includes(`put /coreos.com/network/config`) && command.includes('Backend')),
      'the saved config is put back',
    );
    assert.ok(
      weft1.some((command) => command.includes('systemctl start weftd.service')),
      'weftd.service restarted where it ran',
    );
    assert.ok(!remote('weft2').some((command) => command.includes('systemctl start weftd.service')), 'and only there');
    await driver.destroy();
    assert.throws(() => driver.background('h1', 'true'), /Vagrant run d1 is destroyed/);
  });

  it('says what is missing: too few VMs, no vagrant', async function () {
    await assert.rejects(
      VagrantDriver.create({ hosts: 3 }),
      /3 hosts wanted but only 2 VMs run \(weft1, weft2\): WEFT_VAGRANT_HOSTS=3 vagrant up/,
    );
    await assert.rejects(VagrantDriver.create({ vagrant: join(dir, 'no-such-vagrant') }), /no-such-vagrant not found: install Vagrant/);
  });

  it('takes the private network from WEFT_VAGRANT_SUBNET, as the Vagrantfile does, and names the variable when it is bad', async function () {
    const vm = (name: string, address: string) => ({
      match: `^ssh ${name} -c ip -j -4 addr show$`,
      stdout: JSON.stringify([addrJson('eth1', '192.0.2.99'), addrJson('eth2', address)]),
    });
    answer(vm('weft1', '198.51.100.11'), vm('weft2', '198.51.100.12'));
    process.env.WEFT_VAGRANT_SUBNET = '198.51.100';
    const driver = await VagrantDriver.create({ runId: 'sn1' });
    try {
      assert.deepEqual(
        driver.hosts.map((host) => [host.vm, host.publicIp, host.iface]),
        [
          ['weft1', '198.51.100.11', 'eth2'],
          ['weft2', '198.51.100.12', 'eth2'],
        ],
        'not the 192.0.2 addresses',
      );
      assert.equal(driver.etcdEndpoint, 'http://198.51.100.11:2379');
      const agent = await driver.startAgent('h2');
      assert.deepEqual(agent.args.slice(0, 1), ['--etcd-endpoints=http://198.51.100.11:2379']);
      assert.ok(agent.args.includes('--iface=198.51.100.12'));
    } finally {
      await driver.destroy();
    }
    process.env.WEFT_VAGRANT_SUBNET = '203.0.113';
    await assert.rejects(
      VagrantDriver.create(),
      /weft1 has no address in 203\.0\.113\.0\/24: is it on the Vagrantfile's private network \(WEFT_VAGRANT_SUBNET the same as at vagrant up\)\?/,
    );
    process.env.WEFT_VAGRANT_SUBNET = '198.51';
    await assert.rejects(
      VagrantDriver.create(),
      (err: unknown) =>
        err instanceof VagrantSetupError && /^WEFT_VAGRANT_SUBNET must be three octets such as 192\.0\.2, not "198\.51"$/.test(err.message),
    );
  });

  it('finds the etcd VM by its name, also when it is not one of the hosts, and says so when it is not running', async function () {
    answer(
      { match: '^ssh weft3 -c ip -j -4 addr show$', stdout: JSON.stringify([addrJson('eth1', '192.0.2.13')]) },
      { match: '^status --machine-readable$', stdout: status({ weft1: 'running', weft2: 'running', weft3: 'running' }) },
    );
    const driver = await VagrantDriver.create({ runId: 'et1', hosts: 1, etcdVm: 'weft3' });
    try {
      assert.deepEqual(
        driver.hosts.map((host) => host.vm),
        ['weft1'],
      );
      assert.equal(driver.etcdEndpoint, 'http://192.0.2.13:2379');
      assert.ok(
        remote('weft3').some((command) => command.includes('etcdctl --endpoints=http://192.0.2.13:2379 del --prefix /coreos.com/network/')),
        'etcd is cleared on its own VM',
      );
      assert.ok(!remote('weft1').some((command) => command.includes('etcdctl')), 'and not asked on the first host');
    } finally {
      await driver.destroy();
    }
    answer({ match: '^status --machine-readable$', stdout: status({ weft1: 'poweroff', weft2: 'running', weft3: 'running' }) });
    await assert.rejects(
      VagrantDriver.create(),
      /^VagrantSetupError: weft1, the VM that runs etcd, is not running \(running: weft2, weft3\): cd e2e\/vagrant && vagrant up weft1$/,
    );
  });

  it('fails a run with no VM running with one failed test saying what to do, not "0 passed, 0 failed"', function () {
    answer({ match: '^status --machine-readable$', stdout: status({ weft1: 'poweroff', weft2: 'not_created', weft3: 'not_created' }) });
    const run = spawnSync(
      process.execPath,
      [
        join(REPO, 'node_modules', 'mocha', 'bin', 'mocha.js'),
        '--no-config',
        '--reporter',
        join(REPO, 'test', 'summary-reporter.cjs'),
        '--exit',
        join(REPO, 'dist', 'e2e', 'vagrant', 'vagrant.e2e.js'),
      ],
      { cwd: REPO, encoding: 'utf8', env: { ...process.env, CI: '' }, timeout: 60_000 },
    );
    const output = `${run.stdout}${run.stderr}`;
    assert.notEqual(run.status, 0, output);
    assert.match(output, /no Vagrant VM is running in .*e2e\/vagrant\/?: cd e2e\/vagrant && vagrant up \(see e2e\/vagrant\/README\.md\)/);
    assert.equal(output.trim().split('\n').at(-1), '0 passed, 1 failed');
  });

  describe("the VMs run the checkout's weft", function () {
    const local = (): string => buildInfo().source;
    const installed = (vm: string, source: string | undefined): Rule => ({
      match: `^ssh ${vm} -c cat ${INSTALLED_BUILD_INFO}`,
      stdout: source === undefined ? '' : JSON.stringify({ version: '0.1.0', revision: 'unknown', source }),
    });
    const lines: string[] = [];
    const report = (line: string) => lines.push(line);

    beforeEach(function () {
      lines.length = 0;
      assert.notEqual(local(), 'unknown', 'the checkout is built (dist/build-info.json)');
    });

    it('goes ahead when every running VM runs this build', async function () {
      answer(installed('weft1', local()), installed('weft2', local()));
      assert.deepEqual(await prepareVagrantCluster({ report }), ['weft1', 'weft2']);
      assert.ok(!calls().some((call) => ['rsync', 'provision'].includes(call.argv[0])), 'nothing re-provisioned');
      assert.deepEqual(lines, []);
    });

    it('syncs and re-provisions the VMs that run another build or none, then checks again', async function () {
      const answerFile = join(dir, 'weft2-build-info.json');
      answer(
        installed('weft1', local()),
        { match: `^ssh weft2 -c cat ${INSTALLED_BUILD_INFO}`, stdoutFile: answerFile },
        { match: '^provision weft2$', touch: answerFile, content: JSON.stringify({ source: local() }) },
      );
      assert.deepEqual(await prepareVagrantCluster({ report, sync: true }), ['weft1', 'weft2']);
      const steps = calls()
        .filter((call) => ['rsync', 'provision'].includes(call.argv[0]))
        .map((call) => call.argv.join(' '));
      assert.deepEqual(steps, ['rsync weft2', 'provision weft2']);
      assert.match(
        lines.join('\n'),
        /^weft2 runs a weft built from other sources than this checkout: syncing the checkout and re-provisioning \(vagrant rsync weft2; vagrant provision weft2\)/,
      );
    });

    it('fails saying what to run when told not to sync (WEFT_VAGRANT_SYNC=0), or when provisioning did not help', async function () {
      answer(installed('weft1', 'f'.repeat(64)), installed('weft2', local()));
      process.env.WEFT_VAGRANT_SYNC = '0';
      await assert.rejects(
        prepareVagrantCluster({ report }),
        /^VagrantSetupError: weft1 runs a weft built from other sources than this checkout: cd e2e\/vagrant && vagrant rsync && vagrant provision/,
      );
      assert.ok(!calls().some((call) => call.argv[0] === 'provision'));
      delete process.env.WEFT_VAGRANT_SYNC;
      await assert.rejects(prepareVagrantCluster({ report }), /^VagrantSetupError: weft1 still runs another build after vagrant provision/);
      answer(installed('weft1', undefined), installed('weft2', local()), {
        match: '^provision',
        code: 1,
        stdout: '1,,ui,error,The SSH connection was unexpectedly closed.\\n',
      });
      await assert.rejects(prepareVagrantCluster({ report }), /^VagrantSetupError: vagrant provision weft1 failed \(exit 1\)/);
    });
  });
});

describe('e2e/vagrant: the Vagrantfile', function () {
  this.timeout(60_000);
  let home: string;

  before(function () {
    const installed = spawnSync('sh', ['-c', 'command -v vagrant'], { stdio: 'ignore' }).status === 0;
    requireOrSkip(this, installed ? undefined : "needs the vagrant binary (deploy/ensure-deps.sh test installs Debian's vagrant package)");
    home = mkdtempSync(join(tmpdir(), 'weft-vagrant-home-'));
  });

  after(function () {
    if (home !== undefined) rmSync(home, { recursive: true, force: true });
  });

  function validate(env: Record<string, string>): { code: number | null; output: string } {
    // VAGRANT_HOME and the dotfile directory in a temporary place: validating leaves nothing in the checkout or ~
    const result = spawnSync('vagrant', ['validate', '--ignore-provider'], {
      cwd: VAGRANT_DIR,
      encoding: 'utf8',
      env: {
        ...process.env,
        VAGRANT_HOME: join(home, 'home'),
        VAGRANT_DOTFILE_PATH: join(home, 'dot'),
        VAGRANT_CHECKPOINT_DISABLE: '1',
        ...env,
      },
      timeout: 55_000,
    });
    return { code: result.status, output: `${result.stdout}${result.stderr}` };
  }

  it('passes vagrant validate with the default and a larger cluster', function () {
    const three = validate({});
    assert.equal(three.code, 0, three.output);
    assert.match(three.output, /Vagrantfile validated successfully/);
    assert.match(three.output, /weft3: Ignoring provider config/);
    assert.doesNotMatch(three.output, /weft4/);
    const five = validate({ WEFT_VAGRANT_HOSTS: '5' });
    assert.equal(five.code, 0, five.output);
    assert.match(five.output, /weft5: Ignoring provider config/);
    assert.ok(!existsSync(join(VAGRANT_DIR, '.vagrant')), 'nothing left in the checkout');
  });

  it('refuses a bad host count, naming the variable', function () {
    const bad = validate({ WEFT_VAGRANT_HOSTS: '0' });
    assert.notEqual(bad.code, 0);
    assert.match(bad.output, /WEFT_VAGRANT_HOSTS must be a number from 1 to 20, not "0"/);
  });
});
