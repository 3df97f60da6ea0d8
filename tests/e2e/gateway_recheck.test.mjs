// The gateway checks a token it holds again off the request's path (`waitUntil`) once it is
// used again two thirds of its cache lifetime after its check: a token in steady use never
// waits on storage, and a revocation published elsewhere (here written straight into KV, so
// the Worker's own isolate was not the one that revoked) stops it before its entry would have
// run out, because the check again reads KV itself, not the isolate's cache.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker, addPartner, startOrigin, sleep } from './harness.mjs';
import { basicAuth, browserFlow, decodeJwt, pkce, serviceToken } from './oauth.mjs';

const TTL_S = 6; // GATE_CACHE_TTL_SECONDS: the admitted-token entry lives 6 s, checked again after 4 s
let w;
let origin;
let client;

before(async () => {
  origin = await startOrigin();
  w = await startWorker({ vars: { ORIGIN_URL: origin.url, GATE_CACHE_TTL_SECONDS: String(TTL_S) } });
  await addPartner(w, 'acme', ['https://app.acme.example']);
  const res = await w.admin('/partners/acme/clients', {
    method: 'POST',
    body: { name: 'acme server', redirect_uris: ['https://app.acme.example/cb'], grant_types: ['client_credentials'], scopes: ['api'] },
  });
  assert.equal(res.status, 201);
  client = await res.json();
});
after(async () => {
  await w?.stop();
  await origin?.stop();
});

const call = (token) => w.fetch('/api/v1/classes', { headers: { authorization: `Bearer ${token}` } });

test('gateway_recheck_a_token_revoked_elsewhere_is_refused_before_its_cache_entry_runs_out', async () => {
  const token = await serviceToken(w, client, 'api');
  // The first sight rests on the client record the token endpoint cached: the next use checks
  // it again at once, and the entry then starts from that check.
  assert.equal((await call(token)).status, 200, 'admitted, and held by the isolate');
  assert.equal((await call(token)).status, 200);
  await sleep(300);
  const admittedAt = Date.now();
  assert.equal((await call(token)).status, 200, 'held, from the check again');
  // Revoked by another isolate: the marker appears in KV; this isolate's caches still say no.
  await (await w.kv('PARTNERS')).put(`revoked:${decodeJwt(token).payload.jti}`, '1');
  assert.equal((await call(token)).status, 200, 'still held: the entry is young');
  await sleep(admittedAt + 4_300 - Date.now());
  const before = origin.received.length;
  assert.equal((await call(token)).status, 200, 'held, and checked again off the path');
  await sleep(400);
  assert.ok(Date.now() - admittedAt < TTL_S * 1000, 'still within the first entry lifetime (the test would prove nothing after it)');
  const res = await call(token);
  assert.equal(res.status, 401);
  assert.equal((await res.json()).error, 'invalid_token');
  assert.equal(origin.received.length, before + 1, 'the refused call never reached the origin');
});

test('gateway_recheck_a_first_sight_on_a_cached_revocation_read_is_checked_again_at_its_next_use', async () => {
  // Two access tokens of one grant share its revocation marker: the first's admission caches
  // "not revoked"; the grant is revoked elsewhere; the second is first seen on that cached read.
  await w.admin('/users/ada', { method: 'PUT', body: { password: 'correct horse battery staple', name: 'Ada' } });
  const app = await (await w.admin('/partners/acme/clients', {
    method: 'POST',
    body: { name: 'acme web', redirect_uris: ['https://app.acme.example/cb'], grant_types: ['authorization_code', 'refresh_token'], scopes: ['openid', 'api'] },
  })).json();
  const { verifier, challenge } = pkce();
  const { callback } = await browserFlow(w, { client: app, username: 'ada', password: 'correct horse battery staple', scope: 'openid api', challenge, nonce: 'n' });
  const tokenCall = (fields) => w.fetch('/oauth2/token', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(app.client_id, app.client_secret) },
    body: new URLSearchParams(fields).toString(),
  });
  const first = await (await tokenCall({ grant_type: 'authorization_code', code: callback.searchParams.get('code'), redirect_uri: 'https://app.acme.example/cb', code_verifier: verifier })).json();
  const second = await (await tokenCall({ grant_type: 'refresh_token', refresh_token: first.refresh_token })).json();
  const gid = decodeJwt(first.access_token).payload.gid;
  assert.equal(decodeJwt(second.access_token).payload.gid, gid, 'one grant');
  const start = Date.now();
  assert.equal((await call(first.access_token)).status, 200, 'caches "not revoked" for the grant');
  await (await w.kv('PARTNERS')).put(`revoked:${gid}`, '1');
  assert.equal((await call(second.access_token)).status, 200, 'first sight, on the cached read');
  assert.equal((await call(second.access_token)).status, 200, 'its next use checks it again, off the path');
  await sleep(300);
  const res = await call(second.access_token);
  assert.equal(res.status, 401, 'refused long before its entry would have run out');
  assert.equal((await res.json()).error, 'invalid_token');
  assert.ok(Date.now() - start < TTL_S * 1000 * 2 / 3, 'before the two-thirds check again (the test would prove nothing after it)');
});

test('gateway_recheck_a_token_in_steady_use_is_refused_within_one_entry_lifetime_of_its_revocation', async () => {
  const token = await serviceToken(w, client, 'api');
  const start = Date.now();
  // A call every 1.5 s for 9 s: each entry is checked again before it runs out.
  while (Date.now() - start < 9_000) {
    assert.equal((await call(token)).status, 200);
    await sleep(1_500);
  }
  // Then revoked elsewhere: the next check again finds it.
  await (await w.kv('PARTNERS')).put(`revoked:${decodeJwt(token).payload.jti}`, '1');
  let refused = false;
  const until = Date.now() + TTL_S * 1000 + 1_000;
  while (!refused && Date.now() < until) {
    const res = await call(token);
    refused = res.status === 401;
    await sleep(500);
  }
  assert.ok(refused, 'refused within the entry lifetime after its revocation');
});
