// Usage counters per partner, client and hour, through GET /admin/usage and `scripts/partner
// usage`. Isolates send their counts to the usage queue after every request here
// (USAGE_FLUSH_SECONDS=0); its consumer adds them up in D1.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { startWorker, addPartner, startOrigin, sleep, ROOT } from './harness.mjs';
import { serviceToken } from './oauth.mjs';

let w;
let origin;
let client;
let other;

before(async () => {
  origin = await startOrigin({
    respond(req, res) {
      res.writeHead(req.url.startsWith('/api/fail') ? 500 : 200, { 'content-type': 'application/json' });
      res.end('{}');
    },
  });
  w = await startWorker({
    vars: { ORIGIN_URL: origin.url, API_SCOPES: '{"/api": "api", "/api/admin": "api.admin"}', USAGE_FLUSH_SECONDS: '0' },
  });
  await addPartner(w, 'counted', ['https://counted.example']);
  const newClient = async () =>
    (await w.admin('/partners/counted/clients', {
      method: 'POST',
      body: { name: 'svc', redirect_uris: ['https://counted.example/cb'], grant_types: ['client_credentials'], scopes: ['api'] },
    })).json();
  client = await newClient();
  other = await newClient();
});
after(async () => {
  await w?.stop();
  await origin?.stop();
});

const token = (c) => serviceToken(w, c);

const api = (tok, p = '/api/v1/x') => w.fetch(p, { headers: { authorization: `Bearer ${tok}` } });

/** Polls the usage rows until `done(rows)` holds, within 30 s (the counts go through the usage
 * queue, in 1-second batches, into D1 after the response). */
async function usageUntil(query, done) {
  let body;
  const end = Date.now() + 30_000;
  while (Date.now() < end) {
    const res = await w.admin(`/usage?${query}`);
    assert.equal(res.status, 200);
    body = await res.json();
    if (done(body.usage)) return body;
    await sleep(100);
  }
  assert.fail(`usage never matched: ${JSON.stringify(body)}`);
}

test('usage_counts_requests_refusals_statuses_and_latency_per_client_and_hour', async () => {
  const tok = await token(client); // 1 token request (200)
  for (let i = 0; i < 3; i++) assert.equal((await api(tok)).status, 200); // 3 forwarded
  assert.equal((await api(tok, '/api/admin/x')).status, 403); // refused at the edge: scope
  assert.equal((await api(tok, '/api/fail')).status, 500); // the origin's 500
  assert.equal((await w.fetch('/edge/whoami', { headers: { authorization: `Bearer ${tok}` } })).status, 200);
  await token(other);

  const want = { requests: 7, denied: 1, status_4xx: 1, status_5xx: 1 };
  const body = await usageUntil(`partner=counted&client=${client.client_id}`, (rows) => rows[0]?.requests === want.requests);
  assert.equal(body.usage.length, 1);
  const row = body.usage[0];
  assert.deepEqual(
    { requests: row.requests, denied: row.denied, status_4xx: row.status_4xx, status_5xx: row.status_5xx },
    want,
  );
  assert.equal(row.partner_id, 'counted');
  assert.equal(row.client_id, client.client_id);
  assert.equal(row.hour % 3600, 0);
  assert.match(row.hour_utc, /^\d{4}-\d{2}-\d{2}T\d{2}:00Z$/);
  assert.equal(new Date(row.hour_utc).getTime() / 1000, row.hour);
  assert.ok(Number.isInteger(row.p50_ms) && row.p50_ms >= 1, `p50 ${row.p50_ms}`);

  const all = await usageUntil('partner=counted', (rows) => rows.length === 2);
  assert.deepEqual(all.usage.map((r) => r.client_id).sort(), [client.client_id, other.client_id].sort());
  assert.equal(all.truncated, false);
});

test('usage_query_checks_its_parameters', async () => {
  for (const q of ['since=yesterday', 'until=-1', 'since=1.5']) {
    const res = await w.admin(`/usage?${q}`);
    assert.equal(res.status, 400, q);
    assert.equal((await res.json()).error, 'invalid_request', q);
  }
  const none = await (await w.admin('/usage?since=0&until=3600')).json();
  assert.deepEqual(none.usage, [], 'nothing in 1970');
  const unauth = await w.admin('/usage', { token: 'x'.repeat(40) });
  assert.equal(unauth.status, 401);
});

test('usage_cli_prints_a_table', async () => {
  await usageUntil('partner=counted', (rows) => rows.length >= 1);
  const r = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'partner'), 'usage', '--partner', 'counted'], {
    env: { PATH: process.env.PATH, EDGEWARD_URL: w.url, ADMIN_TOKEN: w.adminToken },
    encoding: 'utf8',
    timeout: 20_000,
  });
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.match(lines[0], /^hour \(UTC\) +partner +client +requests +denied +4xx +5xx +p50 ms$/);
  assert.ok(lines.some((l) => l.includes(client.client_id) && /\s7\s+1\s+1\s+1\s+<=\d+$/.test(l)), r.stdout);
});
