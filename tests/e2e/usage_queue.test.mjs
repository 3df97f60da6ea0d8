// Usage counts on their way through the queue into D1, under faults: a send that fails keeps its
// counts for the next flush, a D1 failure is retried, a batch delivered twice counts once, the
// dead-letter queue's consumer counts what the main queue gave up on, and the old UsageLog
// object's rows move into D1 once however often the migration runs. Every scenario polls
// /admin/usage with a deadline, then waits past the queue's next batches and checks that
// nothing was counted twice.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { startWorker, addPartner, startOrigin, sleep, ROOT } from './harness.mjs';
import { serviceToken } from './oauth.mjs';

let origin;
const workers = [];

before(async () => {
  origin = await startOrigin();
});
after(async () => {
  for (const w of workers) await w.stop();
  await origin?.stop();
});

/** A Worker that flushes after every request, with `vars`, a partner and a service client. */
async function scenario(vars) {
  const w = await startWorker({
    vars: { ORIGIN_URL: origin.url, API_SCOPES: '{"/api": "api"}', USAGE_FLUSH_SECONDS: '0', ...vars },
  });
  workers.push(w);
  await addPartner(w, 'counted', ['https://counted.example']);
  const newClient = async () =>
    (await w.admin('/partners/counted/clients', {
      method: 'POST',
      body: { name: 'svc', redirect_uris: ['https://counted.example/cb'], grant_types: ['client_credentials'], scopes: ['api'] },
    })).json();
  return { w, client: await newClient(), other: await newClient() };
}

async function apiCalls(w, tok, n) {
  for (let i = 0; i < n; i++) {
    const res = await w.fetch('/api/v1/x', { headers: { authorization: `Bearer ${tok}` } });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
  }
}

/** The requests counted for `client` (0 before its row exists). */
async function counted(w, client) {
  const res = await w.admin(`/usage?partner=counted&client=${client.client_id}`);
  assert.equal(res.status, 200, await res.clone().text());
  const { usage } = await res.json();
  assert.ok(usage.length <= 1, JSON.stringify(usage));
  return usage[0]?.requests ?? 0;
}

/** Polls until `client` has `want` requests (deadline), then checks it stays so past the next batches. */
async function countsExactly(w, client, want, what, deadlineMs = 30_000) {
  const end = Date.now() + deadlineMs;
  let got = 0;
  while (Date.now() < end) {
    got = await counted(w, client);
    if (got >= want) break;
    await sleep(200);
  }
  assert.equal(got, want, `${what}: ${got} requests counted within ${deadlineMs} ms, want ${want}`);
  await sleep(3_000); // longer than a batch (1 s) and its immediate retry
  assert.equal(await counted(w, client), want, `${what}: counted again later`);
}

/** Waits until a log line matches `re` (deadline). */
async function logged(w, re, what, deadlineMs = 30_000) {
  const end = Date.now() + deadlineMs;
  while (Date.now() < end) {
    const line = w.logs.find((l) => re.test(l));
    if (line) return line;
    await sleep(100);
  }
  assert.fail(`${what}: no log line matching ${re} within ${deadlineMs} ms`);
}

test('usage_send_failure_keeps_the_counts_for_the_next_flush', async () => {
  const { w, client } = await scenario({ EDGEWARD_INJECT_FAULTS: 'USAGE_QUEUE:send:fail1' });
  const tok = await serviceToken(w, client); // its flush fails: kept
  await logged(w, /usage: send failed, 1 messages kept for the next flush/, 'the failed send');
  await apiCalls(w, tok, 2);
  await sleep(1_100); // a kept message is sent again after a second at the soonest
  await apiCalls(w, tok, 1); // sends the kept message, then the buffer
  await countsExactly(w, client, 4, 'token + 3 calls');
  assert.ok(!w.logs.some((l) => l.includes(tok)), 'no token in the logs');
});

test('usage_d1_failure_is_retried_and_counted_once', async () => {
  const { w, client } = await scenario({ EDGEWARD_INJECT_FAULTS: 'DB:batch:fail2' });
  const tok = await serviceToken(w, client);
  await apiCalls(w, tok, 3);
  await countsExactly(w, client, 4, 'token + 3 calls');
  await logged(w, /usage: apply failed: DB batch: injected fault/, 'the failed transactions');
  await logged(w, /usage consumer edgeward-usage: 0 applied, 0 already applied, [1-9]\d* retried/, 'the retry');
});

test('usage_applied_batch_whose_answer_was_lost_counts_once', async () => {
  const { w, client } = await scenario({ EDGEWARD_INJECT_FAULTS: 'DB:batch:lost_once' });
  const tok = await serviceToken(w, client);
  await apiCalls(w, tok, 2);
  await countsExactly(w, client, 3, 'token + 2 calls');
  await logged(w, /usage consumer edgeward-usage: 0 applied, [1-9]\d* already applied, 0 retried/, 'the lost answer found applied');
});

test('usage_redelivery_of_the_same_batch_id_counts_once', async () => {
  // The first send arrives but reports a failure: the isolate sends the same message again.
  const { w, client } = await scenario({ EDGEWARD_INJECT_FAULTS: 'USAGE_QUEUE:send:lost_once' });
  const tok = await serviceToken(w, client);
  await logged(w, /usage: send failed, 1 messages kept/, 'the lost send');
  await countsExactly(w, client, 1, 'the token request, applied once');
  await sleep(1_100);
  await apiCalls(w, tok, 2); // the first one sends the kept message (the same batch id) again
  await countsExactly(w, client, 3, 'token + 2 calls, the token request once');
  await logged(w, /usage consumer edgeward-usage: \d+ applied, 1 already applied/, 'the second delivery deduplicated');
});

test('usage_dead_letter_queue_counts_once', async () => {
  // 6 failed transactions: the main queue's 1 + 5 retries; the dead-letter queue's consumer applies.
  const { w, client } = await scenario({ EDGEWARD_INJECT_FAULTS: 'DB:batch:fail6' });
  const tok = await serviceToken(w, client);
  await apiCalls(w, tok, 2);
  await logged(w, /usage consumer edgeward-usage-dlq: [1-9]\d* applied/, 'the dead-letter queue', 60_000);
  await countsExactly(w, client, 3, 'token + 2 calls', 60_000);
});

test('usage_migration_moves_the_old_objects_rows_into_d1_once', async () => {
  const { w, client, other } = await scenario({ EDGEWARD_USAGE_TO_LEGACY_OBJECT: '1' });
  await apiCalls(w, await serviceToken(w, client), 3);
  await apiCalls(w, await serviceToken(w, other), 1);
  // Each request's flush seeds the old object (6 requests, 6 hand-overs).
  const end = Date.now() + 20_000;
  const seeded = () => w.logs.filter((l) => /rows handed to the legacy object/.test(l)).length;
  while (seeded() < 6 && Date.now() < end) await sleep(100);
  assert.equal(seeded(), 6, 'the old object was seeded');
  assert.equal(await counted(w, client), 0, 'nothing in D1 before the move');

  const migrate = () =>
    spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'partner'), 'usage-migrate', '--page', '1'], {
      env: { PATH: process.env.PATH, EDGEWARD_URL: w.url, ADMIN_TOKEN: w.adminToken },
      encoding: 'utf8',
      timeout: 30_000,
    });
  const first = migrate();
  assert.equal(first.status, 0, first.stderr);
  assert.match(first.stdout, /done: 2 rows moved into D1, 0 were moved before/);
  assert.equal(await counted(w, client), 4);
  assert.equal(await counted(w, other), 2);

  const second = migrate();
  assert.equal(second.status, 0, second.stderr);
  assert.match(second.stdout, /done: 0 rows moved into D1, 2 were moved before/);
  const page = await (await w.admin('/usage/migrate', { method: 'POST', body: {} })).json();
  assert.deepEqual({ moved: page.moved, already: page.already_moved, done: page.done }, { moved: 0, already: 2, done: true });
  assert.equal(await counted(w, client), 4, 'exact after two runs');
  assert.equal(await counted(w, other), 2, 'exact after two runs');
  const row = (await (await w.admin(`/usage?partner=counted&client=${client.client_id}`)).json()).usage[0];
  assert.ok(Number.isInteger(row.p50_ms), 'the latency histogram moved too');
});

test('usage_migration_needs_the_admin_token', async () => {
  const w = workers[0];
  const res = await w.admin('/usage/migrate', { method: 'POST', body: {}, token: 'x'.repeat(40) });
  assert.equal(res.status, 401);
});
