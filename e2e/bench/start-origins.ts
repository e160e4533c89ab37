/** What the cold-start benchmark sorts weftd's CPU by while it loads (probe.ts profiles, cold-start.ts reports). */

/** Where weftd's CPU goes while it loads; a package that is none of these is an origin of its own, by name. */
export const START_ORIGIN = {
  gc: 'garbage collection',
  native: "native code (node's bindings, V8's builtins) and code generated at run time (protobufjs)",
  compile: "V8 compiling the bundle's modules",
  node: "node's own modules (loading them, and the module loader)",
  glue: "esbuild's wrappers around the CommonJS packages (each package's code is first run from there)",
  weft: "weft's own code",
  etcd: "etcd's client (etcd3, @grpc/grpc-js, @grpc/proto-loader, protobufjs)",
} as const;
export const START_ORIGINS: ReadonlySet<string> = new Set(Object.values(START_ORIGIN));

/** Whether a package is part of weftd's etcd client: etcd3 and what it brings (gRPC, the .proto reflection, their helpers). */
export function isEtcdClientPackage(name: string): boolean {
  return (
    ['etcd3', 'protobufjs', 'bignumber.js', 'long', 'lodash.camelcase'].includes(name) ||
    name.startsWith('@js-sdsl/') ||
    name.startsWith('@grpc/') ||
    name.startsWith('@protobufjs/')
  );
}
