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

test('audit_records_each_oauth_and_gateway_event_kind', async () => {
  const { basicAuth, browserFlow, pkce } = await import('./oauth.mjs');
  const c = await (await w.admin('/partners/acme/clients', {
    method: 'POST',
    body: {
      name: 'Audited',
      redirect_uris: ['https://app.acme.example/cb'],
      grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
      scopes: ['openid', 'api', 'reports'],
    },
  })).json();
  const post = (path, fields, auth = basicAuth(c.client_id, c.client_secret)) =>
    w.fetch(path, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: auth },
      body: new URLSearchParams(fields).toString(),
    });
  const { verifier, challenge } = pkce();
  const { callback } = await browserFlow(w, { client: c, username: 'rita', password: SECRET_PASSWORD, challenge, scope: 'openid api' });
  const code = callback.searchParams.get('code');
  const redeem = { grant_type: 'authorization_code', code, redirect_uri: c.redirect_uris[0], code_verifier: verifier };
  const tokens = await (await post('/oauth2/token', redeem)).json();
  assert.equal((await post('/oauth2/token', redeem)).status, 400, 'code replay');

  const { callback: cb2 } = await browserFlow(w, { client: c, username: 'rita', password: SECRET_PASSWORD, challenge, scope: 'openid api' });
  const t2 = await (await post('/oauth2/token', { ...redeem, code: cb2.searchParams.get('code') })).json();
  assert.equal((await post('/oauth2/token', { grant_type: 'refresh_token', refresh_token: t2.refresh_token })).status, 200);
  assert.equal((await post('/oauth2/token', { grant_type: 'refresh_token', refresh_token: t2.refresh_token })).status, 400, 'reuse');

  assert.equal((await post('/oauth2/token', { grant_type: 'client_credentials' }, basicAuth(c.client_id, 'wrong-secret'))).status, 401);
  assert.equal((await post('/oauth2/token', { ...redeem, code: 'AAAAAAAAAAAAAAAAAAAAAA.nope' })).status, 400, 'unknown code');
  assert.equal((await post('/oauth2/revoke', { token: tokens.refresh_token })).status, 200);
  const cc = await (await post('/oauth2/token', { grant_type: 'client_credentials', scope: 'reports' })).json();
  assert.equal((await w.fetch('/api/v1/x', { headers: { authorization: 'Bearer not.a.token' } })).status, 401);
  assert.equal((await w.fetch('/api/v1/x', { headers: { authorization: `Bearer ${cc.access_token}` } })).status, 403, 'scope');
  assert.equal((await w.admin('/partners', { token: 'y'.repeat(40) })).status, 401);
  assert.equal((await w.admin('/usage', { token: 'y'.repeat(40) })).status, 401);

  const kinds = ['authorization', 'code_replay', 'refresh_reuse', 'client_auth_failed', 'grant_refused', 'revocation', 'token_refused', 'scope_denied', 'admin_auth_failed'];
  const all = [];
  for (const k of kinds) {
    let found = [];
    for (let i = 0; i < 50 && found.length === 0; i++) {
      found = (await events(`?type=${k}`)).events;
      if (found.length === 0) await sleep(50);
    }
    assert.ok(found.length > 0, `no ${k} event`);
    all.push(...found);
  }
  const text = JSON.stringify(all);
  for (const secret of [code, tokens.refresh_token, tokens.access_token, t2.refresh_token, cc.access_token, c.client_secret, 'rita']) {
    assert.ok(!text.includes(secret), 'the audit log holds no codes, tokens, secrets or usernames');
  }
  assert.equal(all.find((e) => e.type === 'refresh_reuse').partner, 'acme');
});
