/**
 * Characters that act on a terminal instead of showing: C0 controls (escape sequences begin with ESC; CR
 * and newline can forge lines), DEL, C1 controls (U+009B is a one-character escape-sequence introducer on
 * some terminals) and the bidirectional-text controls, which reorder what is shown.
 */
/* eslint-disable no-control-regex -- these patterns exist to find control characters */
const CONTROLS = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
const CONTROLS_BUT_LAYOUT = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
/* eslint-enable no-control-regex */

function escape(character: string): string {
  return `\\u${character.charCodeAt(0).toString(16).padStart(4, '0')}`;
}

/**
 * `text` (from etcd or a peer) safe to print: every control character becomes a \uXXXX escape, which JSON
 * reads as the same character. With `layout`, newline and tab stay (for whole outputs whose lines weft made,
 * and JSON texts, where both are whitespace): they move the cursor on but overwrite nothing.
 */
export function escapeControls(text: string, options: { layout?: boolean } = {}): string {
  return text.replace(options.layout === true ? CONTROLS_BUT_LAYOUT : CONTROLS, escape);
}
