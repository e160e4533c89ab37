/** weft's native addon for the tests that exercise it (agent/native-addon.ts). */
import { loadNativeAddon, type NativeAddon } from '../agent/native-addon.js';
import { skipOrFail } from './requirements.js';

/** The addon; when it is not built or does not load, skips the running test outside CI and fails it in CI. */
export function requireNativeAddon(context: Mocha.Context): NativeAddon {
  const loaded = loadNativeAddon();
  if ('error' in loaded) skipOrFail(context, `needs weft's native addon (${loaded.error}; npm run build compiles it)`);
  return loaded.addon;
}
