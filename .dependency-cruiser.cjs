/**
 * The layering `npm run lint` checks (dependency-cruiser): no import cycles; common/ is pure; only agent/kernel
 * speaks netlink; no backend folder imports another backend folder.
 */
const BACKENDS = '(vxlan|hostgw|udp|wireguard)';

module.exports = {
  forbidden: [
    {
      name: 'no-cycles',
      severity: 'error',
      comment: 'Modules form a tree of layers: a cycle means two of them are one concept or a layer is upside down.',
      from: {},
      to: { circular: true },
    },
    {
      name: 'common-is-pure',
      severity: 'error',
      comment: 'common/ is pure and root-free: it imports nothing from agent/, e2e/ or test/ (its tests may use test/ helpers).',
      from: { path: '^common/', pathNot: '[.]test[.]ts$' },
      to: { path: '^(agent|e2e|test|deploy)/' },
    },
    {
      name: 'only-kernel-speaks-netlink',
      severity: 'error',
      comment: 'Only agent/kernel speaks netlink.',
      from: { path: '^(agent|common)/', pathNot: '^agent/kernel/' },
      to: { path: '^node_modules/netlink/' },
    },
    {
      name: 'backends-are-plug-ins',
      severity: 'error',
      comment: 'A backend folder holds everything about its backend and imports no other backend folder (shared code lives below them).',
      from: { path: `^agent/${BACKENDS}/` },
      to: { path: `^agent/${BACKENDS}/`, pathNot: '^agent/$1/' },
    },
    {
      name: 'shared-layers-below-backends',
      severity: 'error',
      comment:
        'The layers the backends share (the userspace path, the kernel shim, host effects, etcd) import no backend; their tests may exercise a backend on them.',
      from: { path: '^agent/(userspace|kernel|host|registry)/', pathNot: '[.](test|scenarios)[.]ts$' },
      to: { path: `^agent/${BACKENDS}/` },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(dist|build)/' },
    tsConfig: { fileName: 'tsconfig.json' },
    tsPreCompilationDeps: true,
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default'] },
  },
};
