// Security events are recorded in the audit log and paged through the admin API; they carry no
// secrets. Events are written after the response (waitUntil), so tests poll briefly.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker, addPartner, sleep } from './harness.mjs';
import { CookieJar, formFields } from './oauth.mjs';

let w;
const SECRET_PASSWORD = 'this-is-the-secret-password-42';

before(async () => {
  w = await startWorker();
  await addPartner(w, 'acme', ['https://app.acme.example']);
  await w.admin('/users/rita', { method: 'PUT', body: { password: SECRET_PASSWORD, name: 'Rita' } });
});
after(() => w?.stop());

async function events(query = '') {
  const res = await w.admin(`/audit${query}`);
  assert.equal(res.status, 200);
  return res.json();
}

async function until(pred, what) {
  for (let i = 0; i < 50; i++) {
    const body = await events();
    if (pred(body.events)) return body.events;
    await sleep(50);
  }
  throw new Error(`no audit event: ${what}`);
}

test('audit_records_security_events_without_secrets', async () => {
  const jar = new CookieJar(w.url);
  let res = await jar.fetch(`/login?return_to=${encodeURIComponent('/account')}`);
  const fields = formFields(await res.text());
  res = await jar.postForm('/login', { ...fields, username: 'rita', password: 'wrong-password-99' });
  assert.equal(res.status, 401);
  res = await jar.postForm('/login', { ...fields, username: 'rita', password: SECRET_PASSWORD });
  assert.equal(res.status, 303);
  await w.fetch('/api/x', { headers: { origin: 'https://evil.example' } });
  await w.fetch('/link?request=not-a-jwt');

  const all = await until((e) => ['login_failed', 'login', 'origin_denied', 'link_refused', 'admin_change'].every((k) => e.some((x) => x.type === k)), 'kinds');
  const failed = all.find((e) => e.type === 'login_failed');
  assert.equal(failed.route, '/login');
  assert.equal(failed.status, 401);
  const change = all.find((e) => e.type === 'admin_change' && e.partner === 'acme');
  assert.ok(change, 'the partner creation');
  const text = JSON.stringify(all);
  for (const secret of [SECRET_PASSWORD, 'wrong-password-99', w.adminToken, 'rita']) {
    assert.ok(!text.includes(secret), `the audit log leaks ${secret}`);
  }
});

test('audit_query_filters_and_pages', async () => {
  const byType = await events('?type=login_failed');
  assert.ok(byType.events.length >= 1);
  assert.ok(byType.events.every((e) => e.type === 'login_failed'));
  const byPartner = await events('?partner=acme');
  assert.ok(byPartner.events.every((e) => e.partner === 'acme'));
  const first = await events('?limit=1');
  assert.equal(first.events.length, 1);
  assert.equal(typeof first.next_cursor, 'number');
  const second = await events(`?limit=1&cursor=${first.next_cursor}`);
  assert.equal(second.events.length, 1);
  assert.ok(second.events[0].seq > first.events[0].seq);
  const future = await events(`?since=${Math.floor(Date.now() / 1000) + 3600}`);
  assert.deepEqual(future.events, []);
  const bad = await w.admin('/audit?since=yesterday');
  assert.equal(bad.status, 400);
  assert.equal((await bad.json()).field, 'since');
  const anon = await w.admin('/audit', { token: null });
  assert.equal(anon.status, 401);
});

test('audit_throttles_floods_of_denied_origins', async () => {
  const before = (await events('?type=origin_denied')).events.length;
  await Promise.all(Array.from({ length: 30 }, () => w.fetch('/api/x', { headers: { origin: 'https://flood.example' } })));
  await sleep(300);
  const after = (await events('?type=origin_denied')).events.length;
  assert.ok(after - before <= 2, `a flood wrote ${after - before} events`);
});
