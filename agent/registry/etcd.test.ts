import assert from 'node:assert/strict';
import { retryBackoff } from './etcd.js';

describe('retryBackoff: the delays between attempts to reach etcd', () => {
  /** The first `count` delays of one agent's sequence. */
  function delays(count: number): number[] {
    const out: number[] = [];
    let backoff = retryBackoff(100, 5000).next(undefined);
    for (let i = 0; i < count; i++) {
      out.push(backoff.duration);
      backoff = backoff.next(undefined);
    }
    return out;
  }

  it('stays within the cap and grows towards it', () => {
    const sequences = Array.from({ length: 300 }, () => delays(12));
    for (const sequence of sequences) for (const delay of sequence) assert.ok(delay >= 0 && delay <= 5000, `delay ${delay}`);
    const mean = (i: number) => sequences.reduce((sum, sequence) => sum + sequence[i], 0) / sequences.length;
    assert.ok(mean(0) < 500, `first delays average ${mean(0)} ms`);
    assert.ok(mean(11) > 2500, `late delays average ${mean(11)} ms`);
  });

  it("draws each agent's delays at random, so that agents that failed together do not retry together", () => {
    const agents = 300;
    const sequences = Array.from({ length: agents }, () => delays(8));
    for (let i = 0; i < 8; i++) {
      // when each agent makes its (i+1)-th attempt, counted in 25 ms bins: at most half of them in any one
      const bins = new Map<number, number>();
      for (const sequence of sequences) {
        const bin = Math.floor(sequence.slice(0, i + 1).reduce((a, b) => a + b, 0) / 25);
        bins.set(bin, (bins.get(bin) ?? 0) + 1);
      }
      const most = Math.max(...bins.values());
      assert.ok(most <= agents / 2, `attempt ${i + 1}: ${most} of ${agents} agents in one 25 ms bin`);
    }
  });
});
