// A key whose limit allows more than 400 requests a second is counted in shards
// (protocol::ratelimit::shard_count); a busy isolate that uses up its shard goes on to another.
// A window that ends during the test starts the shards afresh: that can only make it admit more.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker } from './harness.mjs';
import { serviceToken } from './oauth.mjs';
import { partnerWithLimits, serviceClient } from './limits.mjs';

let w;

before(async () => {
  w = await startWorker();
});
after(async () => {
  await w?.stop();
});

const token = (c) => serviceToken(w, c);

test('ratelimit_a_busy_client_far_under_a_sharded_limit_is_never_refused', async () => {
  // 30,000 a minute is counted in two shards of 15,000 (protocol::ratelimit::shard_count): this
  // one isolate uses up its home shard, and must go on to the other at once, not refuse
  // (it refused for a lease period before, though the client had used half its limit).
  await partnerWithLimits(w, 'busy', { api_per_client_per_minute: 30_000, api_per_minute: 10_000_000 });
  const c = await serviceClient(w, 'busy');
  const tok = await token(c);
  const headers = { origin: 'https://busy.example', authorization: `Bearer ${tok}` };
  const statuses = new Map();
  let sent = 0;
  const worker = async () => {
    while (sent < 16_000) {
      sent++;
      const res = await fetch(`${w.url}/edge/whoami`, { headers });
      await res.arrayBuffer();
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  assert.deepEqual([...statuses], [[200, 16_000]]);
});
