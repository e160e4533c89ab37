/**
 * The deployment artifacts: the docker options script against subnet.env files written by weft itself, the
 * install script into a temporary root, the unit and the docker drop-in through systemd-analyze verify (and
 * a real start where systemd is PID 1), and the environment file, CNI conflist and DaemonSet checked against
 * the code they configure.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Prefix } from '../common/cidr.js';
import { DEFAULT_SUBNET_ENV_PATH, writeSubnetEnv } from '../agent/host/subnet-env.js';
import { WEFTD_OPTIONS } from '../agent/cli/weftd-options.js';
import { DEFAULT_ENV_FILE, parseEnvFile } from '../agent/cli/env-file.js';
import { NetnsLab, seedNetworkConfig, shippedProgram } from '../e2e/lab/index.js';
import { EtcdServer } from '../test/etcd-server.js';
import { sleep } from '../test/wait.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const DEPLOY = join(REPO, 'deploy');
const DOCKER_OPTS = join(DEPLOY, 'docker', 'weft-docker-opts.sh');
const WEFTD_JS = shippedProgram('weftd');
/** sd_booted(3): systemd is PID 1 here. */
const SYSTEMD_RUNS = existsSync('/run/systemd/system');

function run(argv: readonly string[], options: { cwd?: string } = {}): { code: number; stdout: string; stderr: string } {
  const result = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', cwd: options.cwd, timeout: 120_000 });
  return { code: result.status ?? -1, stdout: result.stdout ?? '', stderr: result.stderr ?? '' };
}

function has(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
}

/** The flag a WEFTD_* / FLANNELD_* variable sets, e.g. WEFTD_ETCD_CAFILE → etcd-cafile. */
function flagOf(variable: string): string {
  return variable
    .replace(/^(WEFTD|FLANNELD)_/, '')
    .toLowerCase()
    .replace(/_/g, '-');
}

/** Every WEFTD_* / FLANNELD_* variable in the text, commented out or not. */
function variablesIn(text: string): string[] {
  return [...text.matchAll(/\b((?:WEFTD|FLANNELD)_[A-Z0-9_]+)\b/g)].map((match) => match[1]);
}

describe("deploy/: weft-docker-opts (flannel's mk-docker-opts.sh)", function () {
  let dir: string;

  beforeEach(function () {
    dir = mkdtempSync(join(tmpdir(), 'weft-docker-opts-'));
  });

  afterEach(function () {
    rmSync(dir, { recursive: true, force: true });
  });

  async function subnetEnv(ipMasq: boolean, ipv6 = false): Promise<string> {
    const path = join(dir, 'subnet.env');
    await writeSubnetEnv(path, {
      network: Prefix.parse('198.18.0.0/16'),
      subnet: Prefix.parse('198.18.5.0/24'),
      ...(ipv6 ? { ipv6Network: Prefix.parse('2001:db8:100::/48'), ipv6Subnet: Prefix.parse('2001:db8:100:5::/64') } : {}),
      mtu: 1450,
      ipMasq,
    });
    return path;
  }

  it('turns the subnet.env weftd writes into --bip, --ip-masq and --mtu, as variables and combined', async function () {
    const env = await subnetEnv(true);
    const out = join(dir, 'run', 'docker_opts.env');
    const result = run(['sh', DOCKER_OPTS, '-f', env, '-d', out]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(
      readFileSync(out, 'utf8'),
      [
        'DOCKER_OPT_BIP="--bip=198.18.5.1/24"',
        'DOCKER_OPT_IPMASQ="--ip-masq=false"',
        'DOCKER_OPT_MTU="--mtu=1450"',
        'DOCKER_OPTS=" --bip=198.18.5.1/24 --ip-masq=false --mtu=1450"',
        '',
      ].join('\n'),
    );
    assert.deepEqual(readdirSync(join(dir, 'run')), ['docker_opts.env'], 'no temporary file left');
    // the file is what docker.service's EnvironmentFile= reads
    assert.equal(parseEnvFile(readFileSync(out, 'utf8')).DOCKER_OPTS, ' --bip=198.18.5.1/24 --ip-masq=false --mtu=1450');
  });

  it("lets docker masquerade when weft does not, and takes -i, -c, -k and -m as flannel's script does", async function () {
    const env = await subnetEnv(false);
    assert.equal(
      run(['sh', DOCKER_OPTS, '-f', env, '-d', '-', '-i']).stdout,
      'DOCKER_OPT_BIP="--bip=198.18.5.1/24"\nDOCKER_OPT_IPMASQ="--ip-masq=true"\nDOCKER_OPT_MTU="--mtu=1450"\n',
    );
    assert.equal(
      run(['sh', DOCKER_OPTS, '-f', env, '-d', '-', '-c', '-m', '-k', 'DOCKER_NETWORK_OPTIONS']).stdout,
      'DOCKER_NETWORK_OPTIONS=" --bip=198.18.5.1/24 --mtu=1450"\n',
    );
    const v6 = run(['sh', DOCKER_OPTS, '-f', await subnetEnv(true, true), '-d', '-', '-c']);
    assert.equal(v6.stdout, 'DOCKER_OPTS=" --bip=198.18.5.1/24 --ip-masq=false --mtu=1450 --ipv6 --fixed-cidr-v6=2001:db8:100:5::1/64"\n');
  });

  it('says what is wrong with its input and its flags', async function () {
    const missing = run(['sh', DOCKER_OPTS, '-f', join(dir, 'nope.env'), '-d', '-']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /cannot read .*nope\.env \(is weftd running\?/);
    const partial = join(dir, 'partial.env');
    writeFileSync(partial, 'FLANNEL_NETWORK=198.18.0.0/16\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n');
    assert.match(run(['sh', DOCKER_OPTS, '-f', partial, '-d', '-']).stderr, /has no FLANNEL_SUBNET=<address>\/<length>/);
    writeFileSync(partial, 'FLANNEL_SUBNET=198.18.5.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=yes\n');
    assert.match(run(['sh', DOCKER_OPTS, '-f', partial, '-d', '-']).stderr, /FLANNEL_IPMASQ="yes"; want true or false/);
    const badKey = run(['sh', DOCKER_OPTS, '-f', partial, '-d', '-', '-k', 'NOT-A-NAME']);
    assert.equal(badKey.code, 2);
    assert.match(badKey.stderr, /-k NOT-A-NAME is not a variable name/);
    const help = run(['sh', DOCKER_OPTS, '-h']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^Example: /m);
  });
});

describe('deploy/: install.sh into a temporary root', function () {
  this.timeout(120_000);
  let root: string;

  before(function () {
    assert.ok(existsSync(WEFTD_JS), `${WEFTD_JS} is built (npm run build)`);
    root = mkdtempSync(join(tmpdir(), 'weft-install-'));
  });

  after(function () {
    if (root !== undefined) rmSync(root, { recursive: true, force: true });
  });

  it('installs the built agent, production dependencies, wrappers, unit, environment file and examples', function () {
    const result = run(['bash', join(DEPLOY, 'install.sh'), '--destdir', root, '--prefix', '/usr/local']);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, new RegExp(`installed weft \\d+\\.\\d+\\.\\d+ into ${root.replace(/[.]/g, '\\.')}`));
    const lib = join(root, 'usr/local/lib/weft');
    for (const file of [
      'dist/bin/weftd.js',
      'dist/bin/weftctl.js',
      'dist/bin/monitor-child.js',
      'dist/bin/worker.js',
      'package.json',
      'node_modules/netlink/package.json',
      'node_modules/cap/package.json',
    ]) {
      assert.ok(existsSync(join(lib, file)), `${file} installed`);
    }
    assert.ok(!existsSync(join(lib, 'node_modules/mocha')) && !existsSync(join(lib, 'node_modules/esbuild')), 'dev dependencies pruned');
    assert.ok(
      !existsSync(join(lib, 'dist/e2e')) && !existsSync(join(lib, 'dist/agent')) && !existsSync(join(lib, 'dist/common')),
      "tsc's per-module output, tests and lab not installed",
    );

    // the installed tree runs on its own
    const help = run([process.execPath, join(lib, 'dist/bin/weftctl.js'), '--environment-file=', 'doctor', '--help']);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /weftctl doctor/);
    const weftdHelp = run([process.execPath, join(lib, 'dist/bin/weftd.js'), '--help']);
    assert.equal(weftdHelp.code, 0, weftdHelp.stderr);
    assert.equal(
      run([process.execPath, join(lib, 'dist/bin/weftd.js'), '--version']).stdout,
      `${(JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version}\n`,
    );

    assert.equal(
      readFileSync(join(root, 'usr/local/bin/weftd'), 'utf8'),
      '#!/bin/sh\n# installed by weft\'s deploy/install.sh\nexec node "/usr/local/lib/weft/dist/bin/weftd.js" "$@"\n',
    );
    for (const tool of ['weftd', 'weftctl', 'weft-docker-opts']) {
      assert.equal(statSync(join(root, 'usr/local/bin', tool)).mode & 0o777, 0o755, `${tool} is executable`);
    }
    const unit = readFileSync(join(root, 'etc/systemd/system/weftd.service'), 'utf8');
    assert.match(unit, /^ExecStart=\/usr\/local\/bin\/weftd$/m);
    assert.doesNotMatch(unit, /@[A-Z]+@/, 'every placeholder replaced');
    assert.equal(statSync(join(root, DEFAULT_ENV_FILE)).mode & 0o777, 0o600, 'the environment file may hold etcd credentials');
    assert.equal(readFileSync(join(root, DEFAULT_ENV_FILE), 'utf8'), readFileSync(join(DEPLOY, 'weftd.env'), 'utf8'));
    assert.match(
      readFileSync(join(root, 'usr/local/share/weft/docker/docker-weft.conf'), 'utf8'),
      /^ExecStartPre=\/usr\/local\/bin\/weft-docker-opts /m,
    );
    for (const file of [
      'cni/10-weft.conflist',
      'kubernetes/weft-daemonset.yaml',
      'monitoring/weft-dashboard.json',
      'monitoring/weft-alerts.yml',
    ]) {
      assert.ok(existsSync(join(root, 'usr/local/share/weft', file)), file);
    }
    // weft_build_info and the Vagrant driver read the build's facts from beside dist/bin
    assert.deepEqual(
      JSON.parse(readFileSync(join(lib, 'dist/build-info.json'), 'utf8')),
      JSON.parse(readFileSync(join(REPO, 'dist/build-info.json'), 'utf8')),
    );
    assert.ok(existsSync(join(root, 'usr/local/share/doc/weft/README.md')));
  });

  it("the installed weftctl talks to a real etcd: the bundle finds its chunks in the installed tree and etcd's definitions inside it", async function () {
    const etcd = await EtcdServer.start();
    try {
      const weftctl = (...args: string[]) =>
        run([
          process.execPath,
          join(root, 'usr/local/lib/weft/dist/bin/weftctl.js'),
          '--environment-file=',
          `--etcd-endpoints=${etcd.endpoint}`,
          ...args,
        ]);
      const set = weftctl('config', 'set', '--network', '198.18.0.0/16');
      assert.equal(set.code, 0, set.stderr);
      const get = weftctl('config', 'get');
      assert.equal(get.code, 0, get.stderr);
      assert.equal((JSON.parse(get.stdout) as { Network: string }).Network, '198.18.0.0/16');
    } finally {
      await etcd.destroy();
    }
  });

  it('upgrades in place and keeps the settings', function () {
    writeFileSync(join(root, DEFAULT_ENV_FILE), 'WEFTD_ETCD_ENDPOINTS=http://192.0.2.2:2379\n');
    writeFileSync(join(root, 'usr/local/lib/weft/dist/stale.js'), '');
    const result = run(['bash', join(DEPLOY, 'install.sh'), `--destdir=${root}`]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /kept \/etc\/weft\/weftd\.env/);
    assert.equal(readFileSync(join(root, DEFAULT_ENV_FILE), 'utf8'), 'WEFTD_ETCD_ENDPOINTS=http://192.0.2.2:2379\n');
    assert.ok(!existsSync(join(root, 'usr/local/lib/weft/dist/stale.js')), 'the old tree is replaced, not merged');
    assert.deepEqual(readdirSync(join(root, 'usr/local/lib')), ['weft'], 'no staging or old tree left');
  });

  it('refuses an unbuilt checkout and unknown flags, naming the problem', function () {
    const empty = join(root, 'empty-checkout');
    mkdirSync(empty);
    const unbuilt = run(['bash', join(DEPLOY, 'install.sh'), '--destdir', join(root, 'x'), '--source', empty]);
    assert.equal(unbuilt.code, 1);
    assert.match(unbuilt.stderr, /dist\/bin\/weftd\.js is missing: build weft first \(npm ci && npm run build\)/);
    const unknown = run(['bash', join(DEPLOY, 'install.sh'), '--frobnicate']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown argument: --frobnicate/);
    const relative = run(['bash', join(DEPLOY, 'install.sh'), '--destdir', join(root, 'x'), '--prefix', 'usr']);
    assert.match(relative.stderr, /--prefix must be an absolute path/);
  });

  it('installs a unit and a docker drop-in that systemd-analyze verifies', function () {
    assert.ok(
      has('systemd-analyze'),
      "systemd-analyze is not installed: deploy/ensure-deps.sh test installs it (Debian's systemd package)",
    );
    // verify checks that ExecStart exists: point it at the staged binaries. docker.service is a stand-in
    // beside weftd.service with the drop-in in docker.service.d/, as systemd finds drop-ins.
    const dir = join(root, 'verify');
    mkdirSync(join(dir, 'docker.service.d'), { recursive: true });
    const staged = (text: string) => text.replaceAll('/usr/local/bin/', `${join(root, 'usr/local/bin')}/`);
    writeFileSync(join(dir, 'weftd.service'), staged(readFileSync(join(root, 'etc/systemd/system/weftd.service'), 'utf8')));
    writeFileSync(join(dir, 'docker.service'), '[Unit]\nDescription=stand-in for docker.service\n\n[Service]\nExecStart=/bin/true\n');
    writeFileSync(
      join(dir, 'docker.service.d', 'weft.conf'),
      staged(readFileSync(join(root, 'usr/local/share/weft/docker/docker-weft.conf'), 'utf8')).replace('/usr/bin/dockerd ', '/bin/true '),
    );
    for (const unit of ['weftd.service', 'docker.service']) {
      const result = run(['systemd-analyze', 'verify', join(dir, unit)]);
      assert.equal(result.code, 0, `${unit}: ${result.stderr}`);
      assert.equal(result.stderr.trim(), '', `${unit}: no warnings`);
    }
    // the drop-in is read: a bad line in it is reported
    writeFileSync(
      join(dir, 'docker.service.d', 'weft.conf'),
      `${readFileSync(join(dir, 'docker.service.d', 'weft.conf'), 'utf8')}NotAKey=1\n`,
    );
    assert.match(run(['systemd-analyze', 'verify', join(dir, 'docker.service')]).stderr, /weft\.conf:\d+: Unknown key 'NotAKey'/);
  });
});

describe('deploy/: unit, environment file, CNI conflist and DaemonSet match the code', function () {
  const require = createRequire(import.meta.url);
  const yaml = require('js-yaml') as { loadAll(text: string): unknown[] };

  it('the unit starts after network-online, is ready when weftd says so, has a watchdog, restarts on failure and reads the environment file', function () {
    const unit = readFileSync(join(DEPLOY, 'weftd.service'), 'utf8');
    assert.match(unit, /^Wants=network-online\.target$/m);
    assert.match(unit, /^After=network-online\.target$/m);
    assert.match(unit, /^Type=notify$/m);
    assert.match(unit, /^NotifyAccess=main$/m, "only weftd's own process notifies");
    assert.match(unit, /^WatchdogSec=\d+s$/m);
    assert.match(unit, /^Restart=on-failure$/m, 'also after a watchdog timeout');
    assert.match(unit, new RegExp(`^EnvironmentFile=-${DEFAULT_ENV_FILE}$`, 'm'));
    assert.match(unit, /^WantedBy=multi-user\.target$/m);
  });

  it('the docker drop-in orders docker after weftd without stopping or restarting it with weftd', function () {
    const dropIn = readFileSync(join(DEPLOY, 'docker', 'docker-weft.conf'), 'utf8');
    assert.match(dropIn, /^After=weftd\.service$/m);
    assert.match(dropIn, /^Wants=weftd\.service$/m);
    assert.doesNotMatch(dropIn, /^(Requires|BindsTo|PartOf|Requisite)=/m, 'these stop or restart docker with weftd');
  });

  it('every variable in the environment file template and the DaemonSet is a weftd flag', function () {
    const flags = new Set(Object.keys(WEFTD_OPTIONS));
    for (const file of ['weftd.env', 'kubernetes/weft-daemonset.yaml']) {
      const variables = variablesIn(readFileSync(join(DEPLOY, file), 'utf8')).filter(
        (name) => name !== 'FLANNELD_' && !name.endsWith('_FLAG'),
      );
      assert.ok(variables.length > 3, file);
      for (const variable of variables) assert.ok(flags.has(flagOf(variable)), `${file}: ${variable} is not a weftd flag`);
    }
  });

  it("the CNI conflist feeds the flannel plugin weft's subnet.env, and the DaemonSet installs the same one", function () {
    const conflist = JSON.parse(readFileSync(join(DEPLOY, 'cni/10-weft.conflist'), 'utf8')) as {
      cniVersion: string;
      plugins: { type: string; subnetFile?: string }[];
    };
    assert.equal(conflist.plugins[0].type, 'flannel');
    assert.equal(conflist.plugins[0].subnetFile, DEFAULT_SUBNET_ENV_PATH);
    assert.equal(WEFTD_OPTIONS['subnet-file'].default, DEFAULT_SUBNET_ENV_PATH);
    const documents = yaml.loadAll(readFileSync(join(DEPLOY, 'kubernetes/weft-daemonset.yaml'), 'utf8')) as {
      kind: string;
      data?: Record<string, string>;
      spec?: unknown;
    }[];
    assert.deepEqual(
      documents.map((document) => document.kind),
      ['ConfigMap', 'DaemonSet'],
    );
    assert.deepEqual(JSON.parse(documents[0].data!['cni-conf.json']), conflist);
  });

  it('the DaemonSet runs weftd on the host network with subnet.env, node id and CNI config on the host', function () {
    const [configMap, daemonSet] = yaml.loadAll(readFileSync(join(DEPLOY, 'kubernetes/weft-daemonset.yaml'), 'utf8')) as [
      { data: Record<string, string> },
      {
        spec: {
          template: {
            spec: {
              hostNetwork: boolean;
              containers: {
                name: string;
                command: string[];
                readinessProbe: { httpGet: { path: string; port: number } };
                volumeMounts: { name: string; mountPath: string }[];
              }[];
              volumes: { name: string; hostPath?: { path: string } }[];
            };
          };
        };
      },
    ];
    const pod = daemonSet.spec.template.spec;
    assert.equal(pod.hostNetwork, true);
    const weftd = pod.containers.find((container) => container.name === 'weftd')!;
    assert.deepEqual(weftd.command, ['/usr/local/bin/weftd']);
    assert.deepEqual(weftd.readinessProbe.httpGet, { path: '/readyz', port: Number(configMap.data.WEFTD_HEALTHZ_PORT) });
    const hostPaths = new Map(
      pod.volumes.filter((volume) => volume.hostPath !== undefined).map((volume) => [volume.name, volume.hostPath!.path]),
    );
    const mounted = new Map(weftd.volumeMounts.map((mount) => [mount.mountPath, hostPaths.get(mount.name)]));
    assert.equal(mounted.get('/run/flannel'), '/run/flannel');
    assert.equal(mounted.get('/var/lib/weft'), '/var/lib/weft', 'the node id survives pod restarts');
  });
});

describe('deploy/: weftd.service under systemd', function () {
  this.timeout(180_000);
  const title = 'starts for real: active once weftd is ready (subnet.env written), kept running by its watchdog pings, stops clean';

  it(SYSTEMD_RUNS ? title : `${title}; not run here: PID 1 is not systemd`, async function () {
    if (!SYSTEMD_RUNS) {
      process.stderr.write('      (not run: PID 1 is not systemd; declared in test/declared-skips.cjs)\n');
      this.skip();
    }
    assert.ok(existsSync(WEFTD_JS), 'weft is built');
    const lab = await NetnsLab.create({ hosts: 1 });
    const host = lab.hosts[0];
    const unit = `weft-test-${lab.runId}.service`;
    const unitPath = join('/run/systemd/system', unit);
    const journal = () => run(['journalctl', '--no-pager', '-n', '40', '-u', unit]).stdout;
    const show = () =>
      Object.fromEntries(
        run(['systemctl', 'show', unit, '-p', 'ActiveState,SubState,Result,StatusText,MainPID,NRestarts,WatchdogTimestampMonotonic'])
          .stdout.trim()
          .split('\n')
          .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
      );
    try {
      await seedNetworkConfig(lab);
      // the installed unit, run inside the lab host's network namespace against the lab's etcd
      const text = readFileSync(join(DEPLOY, 'weftd.service'), 'utf8')
        .replace(
          /^EnvironmentFile=.*$/m,
          [
            `Environment=WEFTD_ETCD_ENDPOINTS=${lab.etcdEndpoint}`,
            `Environment=WEFTD_SUBNET_FILE=${lab.subnetFile(host)}`,
            `Environment=WEFTD_NODE_ID_FILE=${join(dirname(lab.subnetFile(host)), 'node-id')}`,
            `NetworkNamespacePath=/run/netns/${host.netns}`,
          ].join('\n'),
        )
        .replace(/^ExecStart=.*$/m, `ExecStart=${process.execPath} ${WEFTD_JS}`)
        .replace(/^WatchdogSec=.*$/m, 'WatchdogSec=4s')
        .replaceAll('@DOCDIR@', '/usr/share/doc/weft');
      writeFileSync(unitPath, text);
      assert.equal(run(['systemctl', 'daemon-reload']).code, 0);
      // Type=notify: systemctl start returns once weftd sent READY=1
      const start = run(['systemctl', 'start', unit]);
      assert.equal(start.code, 0, `${start.stderr}\n${journal()}`);
      assert.ok((await lab.readSubnetEnv(host))?.subnet !== undefined, 'subnet.env is written when the start completes');
      const started = show();
      assert.equal(started.ActiveState, 'active', journal());
      assert.match(started.StatusText ?? '', /^ready: lease 198\.18\.\d+\.0-24, /);
      // two watchdog periods later the same process runs, and pinged
      await sleep(9_000);
      const later = show();
      assert.deepEqual([later.ActiveState, later.MainPID, later.NRestarts], ['active', started.MainPID, '0'], journal());
      assert.ok(Number(later.WatchdogTimestampMonotonic) > Number(started.WatchdogTimestampMonotonic), 'weftd pinged the watchdog');
      const stop = run(['systemctl', 'stop', unit]);
      assert.equal(stop.code, 0, stop.stderr);
      assert.deepEqual([show().ActiveState, show().Result], ['inactive', 'success'], journal());
    } finally {
      run(['systemctl', 'stop', unit]);
      rmSync(unitPath, { force: true });
      run(['systemctl', 'daemon-reload']);
      await lab.destroy();
    }
  });
});
