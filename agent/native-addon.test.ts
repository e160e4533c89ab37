import assert from 'node:assert/strict';
import { requireNativeAddon } from '../test/native.js';
import { ADDON_PATH, type NativeAddon, type ReceiverHandle } from './native-addon.js';

const LOOPBACK = 0x7f000001;

/** A UDP socket on loopback with a receiver that counts datagrams; `close` stops the receiver and the socket. */
function listen(addon: NativeAddon): { port: number; handle: ReceiverHandle; received: () => number; close: () => void } {
  let fd = -98;
  let port = 0;
  for (let attempt = 0; attempt < 20 && fd === -98; attempt++) {
    port = 20_000 + Math.floor(Math.random() * 40_000);
    fd = addon.open(LOOPBACK, port, 0, 1 << 16, 0);
  }
  assert.ok(fd >= 0, `open: errno ${-fd}`);
  let count = 0;
  const handle = addon.receive(fd, Buffer.alloc(2048), 2048, 1, new Int32Array(4), (n) => (count += Math.max(n, 0)), 1);
  assert.equal(typeof handle, 'object');
  return {
    port,
    handle: handle as ReceiverHandle,
    received: () => count,
    close: () => {
      addon.stop(handle as ReceiverHandle);
      addon.close(fd);
    },
  };
}

const turn = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 5));

describe("weft's native addon", () => {
  it('is built and loads, every function there: CI runs the addon, never the fallback', function () {
    // Outside CI a build without a C compiler falls back (deploy/build-native.mjs says so) and this test is
    // skipped; in CI the build fails first, and a missing addon fails here.
    const addon = requireNativeAddon(this);
    const functions: (keyof NativeAddon)[] = [
      'open',
      'close',
      'send',
      'receive',
      'unref',
      'stop',
      'captureDrops',
      'sendFrame',
      'netlinkOpen',
      'netlinkJoin',
      'netlinkIgnorePort',
      'unixDatagram',
    ];
    for (const name of functions) assert.equal(typeof addon[name], 'function', `${ADDON_PATH} exports ${name}`);
    const fd = addon.open(LOOPBACK, 0, 0, 0, 0);
    assert.ok(fd >= 0, `open: errno ${-fd}`);
    assert.equal(addon.close(fd), 0);
  });

  it('stop() and unref() of a receiver are safe to call twice, and leave the other receivers alone', async function () {
    const addon = requireNativeAddon(this);
    const sender = addon.open(LOOPBACK, 0, 1 << 16, 0, 0);
    assert.ok(sender >= 0);
    const others: ReturnType<typeof listen>[] = [];
    try {
      // Over and over: a receiver stopped (its memory released once the loop closed its handle), then new
      // receivers, which get the released memory back, then the stale handle stopped and unref'd again.
      for (let round = 0; round < 20; round++) {
        const first = listen(addon);
        first.close();
        await turn();
        const next = listen(addon);
        others.push(next);
        assert.equal(addon.stop(first.handle), 0);
        assert.equal(addon.unref(first.handle), 0);
        assert.equal(addon.stop(first.handle), 0);
        const payload = Buffer.from('weft');
        assert.equal(addon.send(sender, payload, 0, payload.length, 0, LOOPBACK, next.port), payload.length);
        for (let i = 0; i < 200 && next.received() === 0; i++) await turn();
        assert.equal(next.received(), 1, `round ${round}: the new receiver still receives`);
      }
      // unref() of a live receiver, twice, then stop() twice
      const live = others[0];
      assert.equal(addon.unref(live.handle), 0);
      assert.equal(addon.unref(live.handle), 0);
    } finally {
      for (const other of others) other.close();
      for (const other of others) addon.stop(other.handle);
      addon.close(sender);
    }
  });
});
