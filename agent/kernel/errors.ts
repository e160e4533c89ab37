import { constants as osConstants } from 'node:os';
import { WeftError } from '../../common/errors.js';

const ERRNO_NAMES = new Map<number, string>();
for (const [name, value] of Object.entries(osConstants.errno)) {
  if (!ERRNO_NAMES.has(value)) ERRNO_NAMES.set(value, name);
}

/** The errno name for a positive errno number ("EEXIST"), or "E<n>" when node does not know it. */
export function errnoName(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `E${errno}`;
}

/**
 * The kernel refused an rtnetlink request, or its answer was lost.
 *
 * `code` is always `WEFT_NETLINK`; `errno` / `errnoName` say why (`EEXIST`, `ENOENT`, `ENODEV`,
 * `ENETUNREACH`, ... or `ENOBUFS` when the socket overran and the answer to this request was lost, so
 * its outcome is unknown); `op` describes the request in `ip`-like words, e.g.
 * "add route 198.18.2.0/24 via 198.18.2.0 dev weft.1".
 */
export class NetlinkError extends WeftError {
  readonly errno: number;
  readonly errnoName: string;
  readonly op: string;
  constructor(op: string, errno: number, detail?: string) {
    const name = errnoName(errno);
    super('WEFT_NETLINK', `${op}: ${name}${detail ? ` (${detail})` : ''}`);
    this.errno = errno;
    this.errnoName = name;
    this.op = op;
  }
}

/** A request was still queued or unanswered when the socket was destroyed or closed. */
export class NetlinkClosedError extends WeftError {
  readonly op: string;
  constructor(op: string) {
    super('WEFT_NETLINK_CLOSED', `${op}: netlink socket closed`);
    this.op = op;
  }
}

/** True when `err` is a NetlinkError carrying the given errno name. */
export function isNetlinkErrno(err: unknown, name: string): err is NetlinkError {
  return err instanceof NetlinkError && err.errnoName === name;
}

/** Something about a veth pair or a device's features that the kernel would not do. */
export class CaptureDeviceError extends WeftError {
  constructor(message: string, cause?: unknown) {
    super('WEFT_CAPTURE_DEVICE', message, { cause });
  }
}
