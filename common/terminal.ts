/**
 * Characters that act on a terminal instead of showing: C0 controls (escape sequences begin with ESC; CR
 * and newline can forge lines), DEL, C1 controls (U+009B is a one-character escape-sequence introducer on
 * some terminals) and the bidirectional-text controls, which reorder what is shown.
 */
const CONTROLS = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
const CONTROLS_BUT_NEWLINE = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

function escape(character: string): string {
  return `\\u${character.charCodeAt(0).toString(16).padStart(4, '0')}`;
}

/**
 * `text` (from etcd or a peer) safe to print: every control character becomes a \uXXXX escape, which JSON
 * reads as the same character. With `newlines`, "\n" stays (for whole outputs whose lines weft made).
 */
export function escapeControls(text: string, options: { newlines?: boolean } = {}): string {
  return text.replace(options.newlines === true ? CONTROLS_BUT_NEWLINE : CONTROLS, escape);
}
