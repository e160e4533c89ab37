/**
 * The parts of the `netlink` package weft uses. Its main entry also loads the package's nl80211 (Wi-Fi) and
 * WireGuard modules, a quarter of a megabyte of code that weftd would parse, run and keep in memory at every
 * start without ever calling it; importing the modules by path leaves them out, of the bundle too.
 */
export { Flags, FlagsGet, FlagsNew, MessageType, Protocol } from 'netlink/dist/constants.js';
export { createGenericNetlink } from 'netlink/dist/genl/genl.js';
export * as genl from 'netlink/dist/genl/structs.js';
export { RawNetlinkSocket } from 'netlink/dist/raw.js';
export * as ifla from 'netlink/dist/rt/ifla.js';
export * as rt from 'netlink/dist/rt/structs.js';
export { AttrStream, parseMessages, putString, putU32, type NetlinkMessage } from 'netlink/dist/structs.js';
