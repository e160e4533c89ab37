import { excerpt } from './json.js';

/**
 * Every error weft raises on purpose is a WeftError with a stable `code`, so callers, logs and tests can
 * tell failures apart without parsing messages (the undici convention).
 */
export class WeftError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A prefix or address that does not parse or does not fit where it is used. */
export class InvalidCidrError extends WeftError {
  constructor(message: string) {
    super('WEFT_INVALID_CIDR', message);
  }
}

/** The network config in etcd is malformed or inconsistent; `field` names the offending key. */
export class InvalidConfigError extends WeftError {
  readonly field: string;
  constructor(field: string, message: string) {
    super('WEFT_INVALID_CONFIG', message);
    this.field = field;
  }
}

/** A lease key or value in etcd cannot be decoded; `key` is the etcd key. */
export class InvalidLeaseError extends WeftError {
  readonly key: string;
  constructor(key: string, message: string) {
    super('WEFT_INVALID_LEASE', `${excerpt(key)}: ${message}`);
    this.key = key;
  }
}
