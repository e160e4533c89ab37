import { WeftError } from '../../common/errors.js';

/** Quotes argv for a message so that it can be pasted into a shell. */
export function formatCommand(argv: readonly string[]): string {
  return argv.map((arg) => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`)).join(' ');
}

/**
 * A host command could not be run, timed out, or exited non-zero where success was required.
 * `command` is the argv as a shell line, `exitCode` is undefined when it never ran to completion.
 */
export class CommandError extends WeftError {
  readonly command: string;
  readonly exitCode: number | undefined;
  readonly stderr: string;
  constructor(argv: readonly string[], exitCode: number | undefined, stderr: string, why?: string, code = 'WEFT_COMMAND') {
    const command = formatCommand(argv);
    const detail = why ?? `exit ${exitCode}`;
    const tail = stderr.trim() === '' ? '' : `: ${stderr.trim()}`;
    super(code, `${command}: ${detail}${tail}`);
    this.command = command;
    this.exitCode = exitCode;
    this.stderr = stderr;
  }
}

/** iptables / ip6tables / *-restore failed (code WEFT_IPTABLES); the message names the command and stderr. */
export class IptablesError extends CommandError {
  constructor(argv: readonly string[], exitCode: number | undefined, stderr: string, why?: string) {
    super(argv, exitCode, stderr, why, 'WEFT_IPTABLES');
  }
}

/** Reading or writing a sysctl under /proc/sys failed or did not stick; `name` is e.g. net.ipv4.ip_forward. */
export class SysctlError extends WeftError {
  readonly sysctl: string;
  constructor(sysctl: string, message: string, options?: { cause?: unknown }) {
    super('WEFT_SYSCTL', `${sysctl}: ${message}`, options);
    this.sysctl = sysctl;
  }
}

/** No usable public interface (code WEFT_INTERFACE), e.g. "--iface eth9: no such interface". */
export class InterfaceError extends WeftError {
  constructor(message: string) {
    super('WEFT_INTERFACE', message);
  }
}
