import type { Etcd3 } from 'etcd3';
import type { Family } from '../common/cidr.js';
import { isWellKnownPort, tunnelPorts, underlayAddressClash, type NetworkConfig } from '../common/config.js';
import type { PeersReport } from '../common/reachability.js';
import { leaseBackendTypeFor, type Lease, type LeaseSubnets } from '../common/lease.js';
import type { Backend } from './backend.js';
import { createBackend } from './backends.js';
import type { WeftdOptions } from './cli/weftd-options.js';
import { IngressAllowList, PeerAddresses } from './host/ingress.js';
import { IptablesRules } from './host/iptables.js';
import { loadNodeId } from './host/node-id.js';
import { familyView, selectPublicInterface, underlayAddresses, type PublicInterface } from './host/interfaces.js';
import { readSubnetEnv, writeSubnetEnv } from './host/subnet-env.js';
import { enableForwarding } from './host/sysctl.js';
import { PeerProbing } from './health/peer-health.js';
import { HealthServer, Readiness, type PeersFilter } from './http.js';
import { openKernel, openMonitor, type KernelMonitor, type NetlinkKernel } from './kernel/index.js';
import type { Logger } from './log.js';
import { WeftMetrics } from './metrics.js';
import { Reconciler } from './reconciler.js';
import { ConfigWatcher } from './registry/config-watcher.js';
import { connectEtcd, NetworkKeys } from './registry/etcd.js';
import { RegistryStoppedError } from './registry/errors.js';
import { LeaseWatcher } from './registry/lease-watcher.js';
import { SubnetLeaseManager, type LeaseTakeover, type OwnLease } from './registry/subnet-lease.js';

interface FamilyPlane {
  family: Family;
  backend: Backend;
  reconciler: Reconciler;
  iptables: IptablesRules | undefined;
}

function enabledFamilies(config: NetworkConfig): Family[] {
  return [...(config.ipv4 === undefined ? [] : [4 as const]), ...(config.ipv6 === undefined ? [] : [6 as const])];
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });
}

/**
 * weftd: waits for a usable network config, leases this host a subnet, and keeps the kernel's data plane
 * equal to what the leases say until it is stopped. Stopping keeps the lease and the data plane (traffic
 * flows on while weftd restarts) unless `releaseOnExit` is set.
 */
export class Agent {
  readonly metrics: WeftMetrics;
  readonly readiness = new Readiness();
  private readonly abort = new AbortController();
  private readonly log: Logger;
  private readonly client: Etcd3;
  private readonly keys: NetworkKeys;
  private readonly configWatcher: ConfigWatcher;
  private readonly leaseWatcher: LeaseWatcher;
  private readonly leases: SubnetLeaseManager;
  private http: HealthServer | undefined;
  private kernel: NetlinkKernel | undefined;
  private monitor: KernelMonitor | undefined;
  private monitorStarting: Promise<KernelMonitor> | undefined;
  /** One data plane per enabled address family: IPv4 and/or IPv6. */
  private planes: FamilyPlane[] = [];
  private ingress: IngressAllowList | undefined;
  private config: NetworkConfig | undefined;
  private publicInterface: PublicInterface | undefined;
  private writtenSubnet: string | undefined;
  /** Undefined until the lease watcher has talked to etcd. */
  private etcdReachable: boolean | undefined;
  private peersProgrammed = 0;
  private probing: PeerProbing | undefined;

  constructor(
    private readonly options: WeftdOptions,
    logger: Logger,
  ) {
    this.log = logger;
    this.metrics = new WeftMetrics({ perPeerProbes: options.probeMetricsPerPeer });
    this.client = connectEtcd(options.etcd);
    this.keys = new NetworkKeys(options.etcd.prefix);
    this.configWatcher = new ConfigWatcher({ client: this.client, keys: this.keys, logger: logger.child({ component: 'config' }) });
    this.leaseWatcher = new LeaseWatcher({ client: this.client, keys: this.keys, logger: logger.child({ component: 'leases' }) });
    this.leases = new SubnetLeaseManager({
      client: this.client,
      keys: this.keys,
      logger: logger.child({ component: 'lease' }),
      ttlSeconds: options.leaseTtlSeconds,
      renewMarginSeconds: options.leaseRenewMarginSeconds,
    });
    this.readiness.setReady('lease', false, 'waiting for a usable network config in etcd');
  }

  get stopping(): boolean {
    return this.abort.signal.aborted;
  }

  /** Whether every data plane's reconcile loop makes progress (Reconciler.isAlive), for systemd's watchdog. */
  alive(maxRunMs: number): boolean {
    return !this.stopping && this.planes.length > 0 && this.planes.every(({ reconciler }) => reconciler.isAlive(maxRunMs));
  }

  /** Where the agent is, in one line (systemd's STATUS=): what is not ready and why, else its lease and peers. */
  statusLine(): string {
    const report = this.readiness.report();
    const etcd = this.etcdReachable === false ? '; etcd unreachable' : '';
    if (!report.ready) {
      const waiting = report.notReady.map((check) => {
        const reason = report.checks[check].reason;
        return reason === undefined ? check : `${check} (${reason})`;
      });
      return `not ready: ${waiting.join(', ')}${etcd}`;
    }
    return `ready: lease ${this.writtenSubnet}, ${this.peersProgrammed} peers programmed${etcd}`;
  }

  /** Brings the agent up; resolves once the data plane is programmed and subnet.env written. */
  async start(): Promise<void> {
    const kernel = openKernel();
    this.kernel = kernel;
    // Without the addon the kernel monitor is a child process that takes a moment to start: it boots while
    // etcd is asked for the config and our lease.
    const monitorStarting = openMonitor({ ref: false, ignoreRequestsOf: kernel.portId });
    this.monitorStarting = monitorStarting;
    let monitorUp: KernelMonitor | undefined;
    monitorStarting.then(
      (monitor) => (monitorUp = monitor),
      () => undefined,
    ); // failure is reported where it is awaited
    if (this.options.healthzPort > 0) {
      this.http = await HealthServer.listen({
        host: this.options.healthzIP,
        port: this.options.healthzPort,
        readiness: this.readiness,
        metrics: this.metrics,
        peers: (filter) => this.peersReport(filter),
        logger: this.log,
      });
      this.log.info({ url: this.http.url }, 'serving /healthz, /readyz and /metrics');
    }
    this.watchEtcdHealth();
    const { config, publicInterface } = await this.waitForUsableConfig();
    this.config = config;
    this.readiness.setReady('lease', false, 'acquiring a subnet lease');
    const families = enabledFamilies(config);
    this.publicInterface = publicInterface;
    this.log.info(
      {
        iface: publicInterface.name,
        publicIP: publicInterface.ipv4?.publicAddress.toString(),
        publicIPv6: publicInterface.ipv6?.publicAddress.toString(),
        mtu: publicInterface.mtu,
      },
      'using the public interface',
    );

    const backends = families.map((family) => {
      const view = familyView(publicInterface, family);
      const backend = createBackend({
        kernel,
        log: this.log.child({ component: config.backend.type, family }),
        config,
        publicInterface: view,
        vxlanUserspace: this.options.vxlanUserspace,
        wireguard: this.options.wireguard,
      });
      return { family, view, backend };
    });
    this.readiness.setInfo('backend', config.backend.type);
    for (const { backend } of backends) await this.chooseDataPath(backend);

    // Independent start-up steps run side by side: etcd is asked for our lease and for everyone's at once;
    // forwarding, iptables and the first reconcile then overlap too.
    const [own] = await Promise.all([this.acquireLease(config, backends), this.leaseWatcher.start(config)]);
    for (const { family, view, backend } of backends) {
      const reconciler = new Reconciler({
        kernel,
        backend,
        family,
        publicInterface: view,
        log: this.log.child({ component: 'reconcile', family }),
        resyncIntervalMs: this.options.resyncIntervalSeconds * 1000,
        routeForm: this.options.nexthopObjects ? 'nexthop' : 'inline',
      });
      this.planes.push({ family, backend, reconciler, iptables: undefined });
    }
    this.wirePlanes(config, own.lease);
    const wire = (monitor: KernelMonitor): void => {
      this.monitor = monitor;
      monitor.on('change', (change) => {
        for (const { reconciler } of this.planes) reconciler.kernelChanged(change);
      });
      monitor.on('overrun', () => {
        for (const { reconciler } of this.planes) void reconciler.trigger('kernel', true);
      });
      monitor.on('error', (err) => this.log.error({ err }, 'kernel monitor failed; relying on the periodic resync'));
      // while a full run programs (thousands of peers at start), its echoes wait rather than compete with it
      for (const { reconciler } of this.planes) reconciler.on('busy', (busy) => (busy ? monitor.pause() : monitor.resume()));
    };
    // The first reconcile does not wait for the monitor: if it starts before the monitor is listening, one
    // more full run once it is covers whatever changed in between.
    const ready = monitorUp;
    if (ready !== undefined) wire(ready);
    const monitored = ready !== undefined ? Promise.resolve() : monitorStarting.then(wire);
    const programmed = Promise.all(this.planes.map(({ reconciler }) => reconciler.trigger('start')));
    if (ready === undefined) {
      void monitored.then(
        () => Promise.all(this.planes.map(({ reconciler }) => reconciler.trigger('kernel', true))),
        () => undefined,
      );
    }
    await Promise.all([
      programmed,
      monitored,
      (async () => {
        await enableForwarding({ ipv4: families.includes(4), ipv6: families.includes(6), logger: this.log });
        for (const plane of this.planes) plane.iptables = await this.startIptables(config, own.lease, plane.family);
      })(),
      this.startIngressAllowList(config, own.lease),
    ]);
    // once the peers are programmed: probes sent while the first reconcile programs them only compete with it
    if (!this.stopping) this.startProbing(own.lease);
    await this.writeSubnetEnv(own.lease);
  }

  /** Stops; keeps the lease and the data plane unless `releaseOnExit`. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.abort.abort();
    this.log.info({ release: this.options.releaseOnExit }, 'stopping');
    this.probing?.stop();
    await Promise.all(this.planes.map(({ reconciler }) => reconciler.stop()));
    for (const { backend } of this.planes)
      await backend.close?.().catch((err: Error) => this.log.error({ err }, 'could not stop the data path'));
    this.monitor?.close();
    void this.monitorStarting?.then(
      (monitor) => monitor.close(),
      () => undefined,
    );
    for (const { iptables } of this.planes) void iptables?.stop();
    this.ingress?.stop();
    await this.leaseWatcher.stop();
    await this.configWatcher.stop();
    if (this.options.releaseOnExit) {
      await this.leases.release().catch((err: Error) => this.log.error({ err }, 'could not release the lease'));
      for (const { backend, iptables } of this.planes) {
        await backend.teardown().catch((err: Error) => this.log.error({ err }, 'could not remove the devices'));
        await iptables?.remove().catch((err: Error) => this.log.error({ err }, 'could not remove the iptables rules'));
      }
      await this.ingress?.remove().catch((err: Error) => this.log.error({ err }, 'could not remove the ingress allow-list'));
    } else {
      await this.leases.stop();
    }
    await this.kernel?.close();
    await this.http?.close();
    this.client.close();
  }

  /** Lets the backend settle its data path (kernel or userspace) and reports it in the log, /readyz and /metrics. */
  private async chooseDataPath(backend: Backend): Promise<void> {
    await backend.prepare?.();
    const { dataPath, dataPathReason } = backend;
    this.log.info(
      { backend: backend.type, dataPath, reason: dataPathReason },
      `overlay traffic is forwarded by ${dataPath === 'kernel' ? 'the kernel' : 'weft in userspace'}`,
    );
    this.readiness.setInfo('dataPath', dataPath);
    this.readiness.setInfo('dataPathReason', dataPathReason);
    this.metrics.dataPath.set({ backend: backend.type, path: dataPath }, 1);
    const path = backend.userspace;
    if (path !== undefined) {
      this.metrics.setUserspaceSource(() => path.counters());
    }
  }

  private watchEtcdHealth(): void {
    this.metrics.etcdReachable.set(0);
    this.metrics.setIgnoredLeasesSource(() => this.leaseWatcher.ignoredCounts());
    this.leaseWatcher.on('reachable', (ok) => {
      this.etcdReachable = ok;
      this.metrics.etcdReachable.set(ok ? 1 : 0);
    });
    this.leaseWatcher.on('synced', (reason) => {
      if (reason !== 'initial list') this.metrics.watchResyncs.inc();
    });
  }

  /**
   * Waits for a valid config that this agent can run: a Network (IPv6Network) that leaves the public
   * interface's addresses outside (the config parser accepts only the backends weft has). Says why it waits in the log (once per config) and on
   * /readyz (the lease check), never exits.
   */
  private async waitForUsableConfig(): Promise<{ config: NetworkConfig; publicInterface: PublicInterface }> {
    const waiting = (reason: string): void => {
      if (this.config === undefined) this.readiness.setReady('lease', false, `waiting for a usable network config: ${reason}`);
    };
    this.configWatcher.on('missing', () => waiting('there is none'));
    this.configWatcher.on('invalid', (err) => waiting(err.message));
    let config = await this.configWatcher.waitForValid(this.abort.signal);
    for (;;) {
      const families = enabledFamilies(config);
      const publicInterface = await selectPublicInterface({
        iface: this.options.iface,
        ifaceRegex: this.options.ifaceRegex.map((regex) => regex.source),
        publicIp: this.options.publicIP?.toString(),
        publicIpv6: this.options.publicIPv6?.toString(),
        ipv4: families.includes(4),
        ipv6: families.includes(6),
      });
      const problem = underlayAddressClash(config, underlayAddresses(publicInterface));
      if (problem === undefined) return { config, publicInterface };
      this.log.error(
        { err: problem, iface: publicInterface.name },
        "waiting for a network config that leaves this host's underlay addresses outside the overlay",
      );
      waiting(problem);
      config = await new Promise<NetworkConfig>((resolve, reject) => {
        this.configWatcher.once('config', resolve);
        this.abort.signal.addEventListener('abort', () => reject(new RegistryStoppedError()), { once: true });
      });
    }
  }

  private async acquireLease(config: NetworkConfig, backends: readonly { family: Family; backend: Backend }[]): Promise<OwnLease> {
    let hint: LeaseSubnets | undefined;
    try {
      const previous = await readSubnetEnv(this.options.subnetFile);
      if (previous?.subnet !== undefined) hint = { ipv4: previous.subnet, ipv6: previous.ipv6Subnet };
    } catch (err) {
      this.log.warn({ file: this.options.subnetFile, err }, 'ignoring the old subnet.env');
    }
    const ofFamily = (family: Family) => backends.find((entry) => entry.family === family)?.backend;
    const request = {
      nodeId: await loadNodeId(this.options.nodeIdFile),
      publicIP: this.publicInterface!.ipv4?.publicAddress,
      publicIPv6: this.publicInterface!.ipv6?.publicAddress,
      backendType: leaseBackendTypeFor(config.backend.type),
      backendData: ofFamily(4)?.backendData,
      backendV6Data: ofFamily(6)?.backendData,
    };
    this.leases.on('error', (err) => this.log.warn({ err }, 'subnet lease trouble; retrying'));
    this.leases.on('takenOver', (takeover) => this.reportTakeover(config, takeover));
    let delay = 500;
    for (;;) {
      try {
        const own = await this.leases.acquire(config, request, hint);
        this.readiness.setReady('lease', true);
        this.log.info({ lease: own.lease.name, reservation: own.lease.reservation }, 'holding a subnet lease');
        this.noteExpiry(own);
        return own;
      } catch (err) {
        if (this.stopping) throw new RegistryStoppedError();
        this.log.error({ err }, 'could not acquire a subnet lease; retrying');
        await sleep(delay, this.abort.signal);
        delay = Math.min(delay * 2, 30_000);
      }
    }
  }

  /** Says loudly (log, /readyz until restarted) that another host took our subnet; the lease manager acquires a new one. */
  private reportTakeover(config: NetworkConfig, takeover: LeaseTakeover): void {
    const by = takeover.publicIP === undefined ? 'a host that names no public IP' : `the host at ${takeover.publicIP}`;
    const who =
      takeover.nodeId !== undefined
        ? ` (weft node ${takeover.nodeId})`
        : config.ipv4 === undefined
          ? ', which wrote no WeftNodeID: a flanneld host (in an IPv6-only network flanneld takes over the first IPv6-only lease it finds; flanneld and weftd hosts cannot share an IPv6-only network)'
          : ', which wrote no WeftNodeID (flanneld, or an edit by hand)';
    const text = `our lease ${takeover.lease} was taken over by ${by}${who}; containers addressed from it lost their network — weftd takes a new subnet, recreate them`;
    this.log.error({ lease: takeover.lease, publicIP: takeover.publicIP, nodeId: takeover.nodeId }, text);
    this.readiness.setInfo('leaseTakenOver', `${text} (at ${new Date().toISOString()})`);
  }

  private noteExpiry(own: OwnLease): void {
    this.metrics.leaseExpiry.set(own.expiresAt === undefined ? 0 : own.expiresAt / 1000);
  }

  private async startIptables(config: NetworkConfig, lease: Lease, family: Family): Promise<IptablesRules | undefined> {
    const plan = family === 4 ? config.ipv4 : config.ipv6;
    const subnet = family === 4 ? lease.subnets.ipv4 : lease.subnets.ipv6;
    if (plan === undefined || subnet === undefined) return undefined;
    const iptables = new IptablesRules({
      family,
      network: plan.network,
      subnet,
      ipMasq: this.options.ipMasq,
      ...(this.options.ipMasqRandomFullyDisable ? { randomFully: false } : {}),
      forwardRules: this.options.iptablesForwardRules,
      logger: this.log.child({ component: 'iptables', family }),
      resyncSeconds: this.options.iptablesResyncSeconds,
    });
    await iptables.apply();
    iptables.start();
    return iptables;
  }

  /** Lets tunnel datagrams in only from the current peers, following the leases as they come and go. */
  private async startIngressAllowList(config: NetworkConfig, own: Lease): Promise<void> {
    const ports = tunnelPorts(config);
    if (!this.options.ingressAllowList || ports.length === 0) return;
    const wellKnown = ports.find(({ port }) => isWellKnownPort(port));
    if (wellKnown !== undefined) {
      // The allow-list would drop the datagrams of the service that owns the port (DNS, DHCP, NTP, …) from
      // everyone but the peers: the port stays open, as it is on flanneld's hosts.
      this.log.warn({ port: wellKnown.port }, `no ingress allow-list: ${wellKnown.field} is below 1024, where well-known services listen`);
      this.readiness.setInfo('ingressAllowList', `off: ${wellKnown.field} ${wellKnown.port} is below 1024`);
      return;
    }
    const allowList = new IngressAllowList({
      ports: ports.map(({ port }) => port),
      logger: this.log.child({ component: 'ingress' }),
      resyncSeconds: this.options.iptablesResyncSeconds,
    });
    this.ingress = allowList;
    // Each lease event changes the addresses of one lease, in O(1): listing every peer's address on each event
    // would be O(peers), and churn brings hundreds of events a second (the allow-list spaces its nft writes).
    const leases = this.leaseWatcher.leases;
    const peers = new PeerAddresses(own.name);
    const failed = (err: Error) => this.log.error({ err }, 'could not update the ingress allow-list');
    // Listen before the first write: a peer whose lease arrives while the table is being written must not be missed.
    this.leaseWatcher.on('lease', (event) => {
      allowList.changePeers(peers.leaseChanged(event)).catch(failed);
    });
    this.leases.on('acquired', (next) => {
      allowList.changePeers(peers.ownChanged(next.lease.name, leases)).catch(failed);
    });
    // A relist (rare) counts every address again: should a lease event ever be missed (a listener before this
    // one that throws ends the emit), the next relist puts the allow-list right.
    this.leaseWatcher.on('synced', () => {
      allowList.setPeers(peers.reset(leases.values())).catch(failed);
    });
    await allowList.apply(peers.reset(leases.values()));
    allowList.start();
  }

  /** Probes every peer over the IPv4 overlay (--probe-interval); a host that cannot open the socket runs on without. */
  private startProbing(own: Lease): void {
    const plane = this.planes.find((candidate) => candidate.family === 4);
    if (this.options.probeIntervalSeconds === 0 || plane === undefined) return;
    try {
      this.probing = new PeerProbing({
        intervalSeconds: this.options.probeIntervalSeconds,
        maxProbesPerSecond: this.options.probeRate,
        flannelPeersAnswerProbes: plane.backend.flannelPeersAnswerProbes,
        mtu: plane.backend.mtu,
        log: this.log.child({ component: 'probe' }),
        metrics: this.metrics.probes,
        leases: this.leaseWatcher.leases,
      });
    } catch (err) {
      this.log.error({ err }, 'not probing peers');
      return;
    }
    const probing = this.probing;
    probing.setOwn(own);
    this.leaseWatcher.on('lease', (event) => probing.leaseChanged(event));
    this.leaseWatcher.on('synced', () => probing.refresh());
    this.leases.on('acquired', (next) => probing.setOwn(next.lease));
  }

  private peersReport(filter: PeersFilter): PeersReport | undefined {
    return this.probing?.report(filter);
  }

  private wirePlanes(config: NetworkConfig, own: Lease): void {
    const programmed = new Map<Family, number>();
    const clean = new Set<Family>();
    for (const { family, reconciler } of this.planes) {
      reconciler.update({ config, own, peers: this.leaseWatcher.leases });
      this.leaseWatcher.on('lease', (event) => void reconciler.leaseChanged(event));
      reconciler.on('reconciled', (result) => {
        this.metrics.reconcileRuns.inc({ trigger: result.trigger });
        this.metrics.reconcileDuration.observe(result.durationMs / 1000);
        // A peer counts once even when it is programmed for both families.
        programmed.set(family, result.programmed);
        this.peersProgrammed = Math.max(...programmed.values());
        this.metrics.routesBlocked.set({ family: String(family) }, result.blockedRoutes);
        this.metrics.peers.set({ backend: config.backend.type }, this.peersProgrammed);
        if (result.failures === 0) clean.add(family);
        else this.metrics.reconcileFailures.inc();
        this.readiness.setReady('dataplane', clean.size === this.planes.length);
      });
      reconciler.on('operation', (op, result, count) => this.metrics.netlinkOperations.inc({ op, result }, count));
      reconciler.on('aborted', () => this.metrics.reconcileFailures.inc());
    }
    this.leases.on('lost', (reason) => this.readiness.setReady('lease', false, reason));
    this.leases.on('renewed', (next) => this.noteExpiry(next));
    this.leases.on('acquired', (next) => {
      this.readiness.setReady('lease', true);
      this.noteExpiry(next);
      void Promise.all(
        this.planes.map(async ({ family, reconciler, iptables }) => {
          reconciler.update({ own: next.lease });
          await reconciler.trigger('lease');
          await iptables?.update({ subnet: family === 4 ? next.lease.subnets.ipv4 : next.lease.subnets.ipv6 });
        }),
      ).then(() => this.writeSubnetEnv(next.lease));
    });
    this.configWatcher.on('config', (next) => {
      if (JSON.stringify(next.raw) !== JSON.stringify(config.raw)) {
        this.log.warn('the network config changed; restart weftd to apply it (running on with the config it started with)');
      }
    });
  }

  private async writeSubnetEnv(lease: Lease): Promise<void> {
    const config = this.config!;
    const text = lease.name;
    if (this.writtenSubnet === text) return;
    await writeSubnetEnv(this.options.subnetFile, {
      network: config.ipv4?.network,
      subnet: lease.subnets.ipv4,
      ipv6Network: config.ipv6?.network,
      ipv6Subnet: lease.subnets.ipv6,
      mtu: Math.min(...this.planes.map(({ backend }) => backend.mtu)),
      ipMasq: this.options.ipMasq,
    });
    this.writtenSubnet = text;
    this.readiness.setReady('subnetEnv', true);
    this.log.info(
      { file: this.options.subnetFile, subnet: lease.subnets.ipv4?.toString(), ipv6Subnet: lease.subnets.ipv6?.toString() },
      'wrote subnet.env',
    );
  }
}
