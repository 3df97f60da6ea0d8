// Revocation markers (`revoked:{id}` in KV) are written once per revocation: KV takes one write
// a second per key, and a storm of replays or revocations must not turn into a storm of writes.
// A publication that failed is written by the next attempt.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker } from './harness.mjs';
import { pkce, basicAuth, browserFlow, decodeJwt, serviceToken } from './oauth.mjs';

const PASSWORD = 'correct horse battery staple';
let w;
let client;
let service;

async function setUp(vars = {}) {
  const worker = await startWorker({ countKv: true, vars });
  // Limits well above the storms below: every replay must reach the grant object.
  const limits = { token_per_minute: 100000, token_per_client_per_minute: 100000 };
  const partner = await worker.admin('/partners/acme', {
    method: 'PUT',
    body: { name: 'Acme', origins: ['https://app.acme.example'], status: 'active', rate_limits: limits },
  });
  assert.equal(partner.status, 201);
  const web = await (await worker.admin('/partners/acme/clients', {
    method: 'POST',
    body: { name: 'Acme', redirect_uris: ['https://app.acme.example/cb'], scopes: ['openid', 'profile'] },
  })).json();
  const svc = await (await worker.admin('/partners/acme/clients', {
    method: 'POST',
    body: { name: 'Acme server', grant_types: ['client_credentials'], scopes: ['classes.read'] },
  })).json();
  const user = await worker.admin('/users/carol', { method: 'PUT', body: { password: PASSWORD, name: 'Carol Teacher' } });
  assert.ok(user.status === 200 || user.status === 201);
  return { worker, web, svc };
}

before(async () => {
  ({ worker: w, web: client, svc: service } = await setUp());
});
after(() => w?.stop());

function post(worker, path, fields, c = client) {
  return fetch(`${worker.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(c.client_id, c.client_secret) },
    body: new URLSearchParams(fields).toString(),
  });
}

async function code(worker, c) {
  const { verifier, challenge } = pkce();
  const { callback } = await browserFlow(worker, { client: c, username: 'carol', password: PASSWORD, challenge, scope: 'openid profile' });
  return { grant_type: 'authorization_code', code: callback.searchParams.get('code'), redirect_uri: c.redirect_uris[0], code_verifier: verifier };
}

const writesOf = (worker, id) => worker.kvPuts()[`revoked:${id}`] ?? 0;
const parallel = (n, f) => Promise.all(Array.from({ length: n }, f));

test('revocation_marker_written_once_for_50_parallel_code_replays', async () => {
  const fields = await code(w, client);
  const first = await post(w, '/oauth2/token', fields);
  assert.equal(first.status, 200);
  const { access_token } = await first.json();
  const gid = decodeJwt(access_token).payload.gid;
  const replays = await parallel(50, () => post(w, '/oauth2/token', fields));
  assert.deepEqual(replays.map((r) => r.status), Array(50).fill(400));
  assert.equal(writesOf(w, gid), 1, 'one write for the revocation');
  // More replays, one by one: the marker is published already.
  for (let i = 0; i < 5; i++) assert.equal((await post(w, '/oauth2/token', fields)).status, 400);
  assert.equal(writesOf(w, gid), 1);
  const who = await fetch(`${w.url}/oauth2/userinfo`, { headers: { authorization: `Bearer ${access_token}` } });
  assert.equal(who.status, 401, 'the revocation is in force');
});

test('revocation_marker_written_once_for_50_parallel_refresh_token_replays_and_revocations', async () => {
  const t = await (await post(w, '/oauth2/token', await code(w, client))).json();
  const gid = t.refresh_token.split('.')[0];
  const next = await post(w, '/oauth2/token', { grant_type: 'refresh_token', refresh_token: t.refresh_token });
  assert.equal(next.status, 200);
  const current = (await next.json()).refresh_token;
  assert.equal(writesOf(w, gid), 0, 'a refresh revokes nothing');
  const replays = await parallel(50, () => post(w, '/oauth2/token', { grant_type: 'refresh_token', refresh_token: t.refresh_token }));
  assert.deepEqual(replays.map((r) => r.status), Array(50).fill(400));
  assert.equal(writesOf(w, gid), 1);
  // Revoking the revoked grant, many times and in parallel: no further write.
  const revocations = await parallel(50, () => post(w, '/oauth2/revoke', { token: t.access_token }));
  assert.deepEqual(revocations.map((r) => r.status), Array(50).fill(200));
  await post(w, '/oauth2/revoke', { token: current });
  assert.equal(writesOf(w, gid), 1);
});

test('revocation_marker_written_once_for_50_parallel_revocations_of_a_grant', async () => {
  const t = await (await post(w, '/oauth2/token', await code(w, client))).json();
  const gid = t.refresh_token.split('.')[0];
  const revocations = await parallel(50, () => post(w, '/oauth2/revoke', { token: t.refresh_token }));
  // The first revocation ends the grant; the others find the refresh token no longer current (200 either way).
  assert.deepEqual(revocations.map((r) => r.status), Array(50).fill(200));
  const byAccess = await parallel(50, () => post(w, '/oauth2/revoke', { token: t.access_token }));
  assert.deepEqual(byAccess.map((r) => r.status), Array(50).fill(200));
  assert.equal(writesOf(w, gid), 1);
});

test('revocation_marker_written_once_for_50_parallel_revocations_of_a_client_credentials_token', async () => {
  const token = await serviceToken(w, service, 'classes.read');
  const { jti } = decodeJwt(token).payload;
  const revocations = await parallel(50, () => post(w, '/oauth2/revoke', { token }, service));
  assert.deepEqual(revocations.map((r) => r.status), Array(50).fill(200));
  for (let i = 0; i < 5; i++) assert.equal((await post(w, '/oauth2/revoke', { token }, service)).status, 200);
  assert.equal(writesOf(w, jti), 1);
  const intro = await post(w, '/oauth2/introspect', { token }, service);
  assert.deepEqual(await intro.json(), { active: false });
});

test('revocation_marker_failed_first_publication_is_written_by_the_next_attempt', async () => {
  // The first marker write of the isolate fails before it reaches KV.
  const { worker, web } = await setUp({ EDGEWARD_INJECT_FAULTS: 'PARTNERS:put_revoked:fail1' });
  try {
    const fields = await code(worker, web);
    const first = await post(worker, '/oauth2/token', fields, web);
    assert.equal(first.status, 200);
    const { access_token } = await first.json();
    const gid = decodeJwt(access_token).payload.gid;
    assert.equal((await post(worker, '/oauth2/token', fields, web)).status, 503, 'the failed publication is a 503');
    assert.equal(writesOf(worker, gid), 0);
    const again = await post(worker, '/oauth2/token', fields, web);
    assert.equal(again.status, 400, 'the next replay is refused');
    assert.equal((await again.json()).error, 'invalid_grant');
    assert.equal(writesOf(worker, gid), 1, 'and publishes the marker');
    await post(worker, '/oauth2/token', fields, web);
    assert.equal(writesOf(worker, gid), 1);
    const who = await fetch(`${worker.url}/oauth2/userinfo`, { headers: { authorization: `Bearer ${access_token}` } });
    assert.equal(who.status, 401);
  } finally {
    await worker.stop();
  }
});

test('revocation_marker_of_a_client_credentials_token_failed_publication_is_retried', async () => {
  const { worker, svc } = await setUp({ EDGEWARD_INJECT_FAULTS: 'PARTNERS:put_revoked:fail1' });
  try {
    const token = await serviceToken(worker, svc, 'classes.read');
    const { jti } = decodeJwt(token).payload;
    assert.equal((await post(worker, '/oauth2/revoke', { token }, svc)).status, 503);
    assert.equal(writesOf(worker, jti), 0);
    assert.equal((await post(worker, '/oauth2/revoke', { token }, svc)).status, 200);
    assert.equal(writesOf(worker, jti), 1);
    assert.equal((await post(worker, '/oauth2/revoke', { token }, svc)).status, 200);
    assert.equal(writesOf(worker, jti), 1);
  } finally {
    await worker.stop();
  }
});
