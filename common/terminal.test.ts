import assert from 'node:assert/strict';
import fc from 'fast-check';
import { escapeControls } from './terminal.js';

describe('escapeControls', () => {
  it('escapes ANSI sequences, CR, newlines, DEL, C1 and bidi controls, and nothing else', () => {
    assert.equal(escapeControls('vxlan\u001b[31mred\r\nfake line\u0007'), 'vxlan\\u001b[31mred\\u000d\\u000afake line\\u0007');
    assert.equal(escapeControls('a\u009b31mb\u007fc\u202ed'), 'a\\u009b31mb\\u007fc\\u202ed');
    assert.equal(escapeControls('line 1\nline 2\u001b\r\t.', { layout: true }), 'line 1\nline 2\\u001b\\u000d\t.');
    assert.equal(escapeControls('a\tb'), 'a\\u0009b');
    assert.equal(escapeControls('198.18.5.0/24  0a:00:00:00:00:05  ünïcødé ✓'), '198.18.5.0/24  0a:00:00:00:00:05  ünïcødé ✓');
  });

  it('leaves no control character, and JSON reads an escaped JSON text as the same value', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (text) => {
        const escaped = escapeControls(text);
        // eslint-disable-next-line no-control-regex -- the test looks for control characters
        assert.doesNotMatch(escaped, /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/);
        const json = JSON.stringify({ text });
        assert.deepEqual(JSON.parse(escapeControls(json, { layout: true })), { text });
      }),
      { numRuns: 1000 },
    );
  });
});
