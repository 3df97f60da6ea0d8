// A short soak inside the test run (scripts/soak.sh runs the long one): mixed load, then the
// books must balance — no 5xx, no code redeemed twice, no live grant lost, no revoked one back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { soak } from '../../scripts/soak.mjs';

test('soak_short_mixed_load_keeps_the_books', async () => {
  const { summary, violations, fiveXx } = await soak({ seconds: 8, concurrency: 16, log: () => {} });
  assert.deepEqual(violations, [], 'violations');
  assert.deepEqual(fiveXx, [], '5xx answers');
  assert.equal(summary.codes_redeemed_more_than_once, 0);
  assert.ok(summary.operations.code > 0 && summary.operations.refresh > 0 && summary.operations.api > 0 && summary.operations.autologin > 0, JSON.stringify(summary.operations));
  assert.ok(summary.families_revoked_by_a_replay > 0, 'replays were exercised');
  assert.ok(summary.families_live_and_checked > 0, 'live families were checked');
});
