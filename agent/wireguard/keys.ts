/**
 * WireGuard keys: this host's private key file (flanneld's `/run/flannel/wgkey`, base64 as `wg genkey` writes
 * it) and the conversions between the lease's base64 and the UAPI's hex. The private key lives in a private
 * field: logging, inspecting or serialising a WireguardKeys shows the public key only.
 */
import { createPrivateKey, createPublicKey, randomBytes } from 'node:crypto';
import { mkdir, open, readFile, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { inspect } from 'node:util';
import { isWireguardKey } from '../../common/config.js';
import { WeftError } from '../../common/errors.js';

/** flanneld's default; WIREGUARD_KEY_FILE (flanneld's variable) or --wireguard-key-file changes it. */
export const DEFAULT_WIREGUARD_KEY_FILE = '/run/flannel/wgkey';

/** The private key file cannot be read, parsed or written. The message never holds the key. */
export class WireguardKeyError extends WeftError {
  constructor(message: string, cause?: unknown) {
    super('WEFT_WIREGUARD_KEY', message, { cause });
  }
}

/** PKCS #8 DER prefix of an X25519 private key: the 32 key bytes follow. */
const PKCS8_X25519 = Buffer.from('302e020100300506032b656e04220420', 'hex');

/** The X25519 public key of a 32-byte private key, base64. */
function publicKeyOf(secret: Buffer): string {
  const privateKey = createPrivateKey({ key: Buffer.concat([PKCS8_X25519, secret]), format: 'der', type: 'pkcs8' });
  const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  return spki.subarray(spki.length - 32).toString('base64');
}

/** A base64 WireGuard key as the UAPI writes it (64 hex digits). */
export function keyToHex(base64: string): string {
  return Buffer.from(base64, 'base64').toString('hex');
}

/** A UAPI hex key as the lease and `wg` write it (base64). */
export function keyFromHex(hex: string): string {
  return Buffer.from(hex, 'hex').toString('base64');
}

/** The public key of a hex private key as the UAPI reports it (for comparing a device's key with ours). */
export function publicKeyOfHex(privateHex: string): string {
  return publicKeyOf(Buffer.from(privateHex, 'hex'));
}

export class WireguardKeys {
  readonly publicKey: string;
  readonly #secret: Buffer;

  constructor(secret: Buffer) {
    if (secret.length !== 32) throw new WireguardKeyError('a WireGuard private key has 32 bytes');
    this.#secret = Buffer.from(secret);
    this.publicKey = publicKeyOf(this.#secret);
  }

  /** A fresh key, clamped as `wg genkey` makes it. */
  static generate(): WireguardKeys {
    const secret = randomBytes(32);
    secret[0] &= 248;
    secret[31] = (secret[31] & 127) | 64;
    return new WireguardKeys(secret);
  }

  /** For the device (UAPI `private_key=`) only. */
  privateKeyHex(): string {
    return this.#secret.toString('hex');
  }

  /** For the key file and `wg` configuration on stdin only. */
  privateKeyBase64(): string {
    return this.#secret.toString('base64');
  }

  toJSON(): { publicKey: string } {
    return { publicKey: this.publicKey };
  }

  toString(): string {
    return `WireguardKeys(public ${this.publicKey})`;
  }

  [inspect.custom](): string {
    return this.toString();
  }
}

export interface LoadedKeys {
  keys: WireguardKeys;
  /** The file did not exist and was written now. */
  created: boolean;
  /** The file's permission bits (e.g. 0o600). */
  mode: number;
}

/**
 * Reads this host's private key from `path`, or makes one and writes it there (mode 0600, parent directories
 * created) when the file does not exist. Reused on every start; delete the file and restart to rotate the key.
 */
export async function loadOrCreateKeys(path: string): Promise<LoadedKeys> {
  for (let attempt = 0; ; attempt++) {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || attempt > 0) {
        throw new WireguardKeyError(
          `cannot read the WireGuard key file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
          err,
        );
      }
      const created = await createKeyFile(path);
      if (created !== undefined) return { keys: created, created: true, mode: (await stat(path)).mode & 0o777 };
      continue; // another process wrote it first: read theirs
    }
    // flanneld writes the key without a newline, `wg genkey` with one; either reads.
    const trimmed = text.trim();
    if (!isWireguardKey(trimmed)) {
      throw new WireguardKeyError(
        `the WireGuard key file ${path} does not hold a key (32 bytes in base64, as \`wg genkey\` writes); delete it to have a new one made`,
      );
    }
    return { keys: new WireguardKeys(Buffer.from(trimmed, 'base64')), created: false, mode: (await stat(path)).mode & 0o777 };
  }
}

/** Writes a new key to `path` unless the file appeared meanwhile (then undefined). */
async function createKeyFile(path: string): Promise<WireguardKeys | undefined> {
  const keys = WireguardKeys.generate();
  try {
    await mkdir(dirname(path), { recursive: true, mode: 0o755 });
    const file = await open(path, 'wx', 0o600);
    try {
      await file.writeFile(keys.privateKeyBase64());
      await file.chmod(0o600);
    } finally {
      await file.close();
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return undefined;
    throw new WireguardKeyError(
      `cannot write the WireGuard key file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      err,
    );
  }
  return keys;
}
