// Removing a partner removes what it held: its account links, the sessions automatic login
// through them started, and the grants issued through them (revoked at the gateway too). A
// partner created again under the same id, with the same keys, inherits nothing: no link, and
// other pairwise subjects. A removal that fails half way is finished by the same DELETE again.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { startWorker, startOrigin } from './harness.mjs';
import { CookieJar, basicAuth, decodeJwt, formFields, linkAndConfirm } from './oauth.mjs';
import { LINK_REQUEST_TYP, LOGIN_ASSERTION_TYP, generateJwk, publicJwk, signJwt } from '../../scripts/lib/jwk.mjs';

const PASSWORD = 'removal password 1234';
const ORIGIN = 'https://app.gone.example';
const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const key = generateJwk('EdDSA');
const SPEC = { name: 'Gone Learning', origins: [ORIGIN], jwks: { keys: [publicJwk(key)] } };

const origin = await startOrigin();
after(() => origin.stop());

async function worker(vars = {}) {
  return startWorker({ vars: { ORIGIN_URL: origin.url, API_SCOPES: '{"/api": null}', ...vars } });
}

function partnerJwt(typ, claims) {
  const now = Math.floor(Date.now() / 1000);
  return signJwt(key, { alg: 'EdDSA', kid: key.kid, typ }, { iss: ORIGIN, jti: randomUUID(), iat: now, exp: now + 60, ...claims });
}
const linkRequest = (w, sub) => partnerJwt(LINK_REQUEST_TYP, { aud: w.url, sub, return_to: `${ORIGIN}/linked`, state: 'st', account_label: sub });
const loginAssertion = (w, sub) => partnerJwt(LOGIN_ASSERTION_TYP, { aud: w.url, sub });
const grantAssertion = (w, sub) => partnerJwt('JWT', { aud: `${w.url}/oauth2/token`, sub });

async function createPartner(w) {
  const res = await w.admin('/partners/gone', { method: 'PUT', body: SPEC });
  assert.equal(res.status, 201, await res.clone().text());
  return res.json();
}

async function jwtBearerClient(w) {
  const res = await w.admin('/partners/gone/clients', {
    method: 'POST',
    body: { name: 'Gone Server', grant_types: [JWT_BEARER], scopes: ['openid'] },
  });
  assert.equal(res.status, 201);
  return res.json();
}

const jwtBearer = (w, client, assertion) => fetch(`${w.url}/oauth2/token`, {
  method: 'POST',
  headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(client.client_id, client.client_secret) },
  body: new URLSearchParams({ grant_type: JWT_BEARER, assertion }),
});

const api = (w, token) => w.fetch('/api/v1/x', { headers: { authorization: `Bearer ${token}` } });

async function signIn(w, username) {
  const jar = new CookieJar(w.url);
  const form = await jar.fetch(`/login?return_to=${encodeURIComponent('/account')}`);
  const res = await jar.postForm('/login', { ...formFields(await form.text()), username, password: PASSWORD });
  assert.equal(res.status, 303);
  return jar;
}

/** Links the signed-in user of `jar` as `partnerSub`; returns the `sub` of the link token. */
async function link(w, jar, partnerSub) {
  const { page, agreed, confirmed } = await linkAndConfirm(jar, key, linkRequest(w, partnerSub));
  assert.equal(page.status, 200, 'the link consent page');
  assert.equal(agreed.status, 303);
  assert.equal(confirmed.status, 200, 'the partner confirms');
  return decodeJwt((await confirmed.json()).link_token).payload.sub;
}

/** A user linked to partner gone, with a session from automatic login and a jwt-bearer token. */
async function linkedUser(w, username) {
  await w.admin(`/users/${username}`, { method: 'PUT', body: { password: PASSWORD, name: username } });
  const jar = await signIn(w, username);
  const sub = await link(w, jar, `gone-${username}`);
  const auto = new CookieJar(w.url);
  // The partner's page posts the assertion (from its own origin: signed in at once).
  const res = await auto.postForm('/login/auto', { assertion: loginAssertion(w, `gone-${username}`), return_to: '/account' }, { origin: ORIGIN });
  assert.equal(res.status, 303);
  assert.equal((await auto.fetch('/account')).status, 200, 'signed in through the link');
  const svc = await jwtBearerClient(w);
  const tokenRes = await jwtBearer(w, svc, grantAssertion(w, `gone-${username}`));
  assert.equal(tokenRes.status, 200);
  const { access_token: accessToken } = await tokenRes.json();
  assert.equal((await api(w, accessToken)).status, 200, 'the gateway admits the token');
  return { jar, auto, svc, sub, accessToken };
}

async function assertRefusedPage(res, pattern, what) {
  assert.equal(res.status, 403, what);
  assert.equal(res.headers.get('location'), null, `${what}: never redirected`);
  assert.equal(res.headers.get('set-cookie'), null, `${what}: no session`);
  assert.match(await res.text(), pattern, what);
}

async function assertEnded(w, { auto, svc, accessToken }, username) {
  const login = await fetch(`${w.url}/login/auto?${new URLSearchParams({ assertion: loginAssertion(w, `gone-${username}`) })}`, { redirect: 'manual' });
  await assertRefusedPage(login, /unknown partner/, 'automatic login');
  const grant = await jwtBearer(w, svc, grantAssertion(w, `gone-${username}`));
  assert.equal(grant.status, 401, 'jwt-bearer');
  const body = await grant.json();
  assert.equal(body.error, 'invalid_client');
  assert.equal(body.access_token, undefined);
  const page = await auto.fetch('/account');
  assert.equal(page.status, 302, 'the session from automatic login has ended');
  assert.match(page.headers.get('location'), /^\/login\?/);
  const gw = await api(w, accessToken);
  assert.equal(gw.status, 401, 'the jwt-bearer token at the gateway');
  const refusal = await gw.json();
  assert.equal(refusal.error, 'invalid_token');
  assert.match(refusal.error_description, /revoked/, 'revoked and published, not only orphaned');
  assert.deepEqual((await (await w.admin(`/users/${username}/links`)).json()).links, []);
}

test('partner_removal_ends_links_link_sessions_and_grants_and_a_new_partner_inherits_nothing', async () => {
  const w = await worker();
  try {
    const first = await createPartner(w);
    assert.match(first.subject_salt, /^[A-Za-z0-9_-]{22}$/, 'a random salt per partner');
    const ulla = await linkedUser(w, 'ulla');
    const page = await ulla.jar.fetch('/account');
    assert.match(await page.text(), /Gone Learning/, 'the account page lists the link');

    assert.equal((await w.admin('/partners/gone', { method: 'DELETE' })).status, 204);
    await assertEnded(w, ulla, 'ulla');
    const account = await ulla.jar.fetch('/account');
    assert.equal(account.status, 200, 'her own password session goes on');
    const html = await account.text();
    assert.doesNotMatch(html, /Gone Learning/);
    assert.match(html, /No apps are linked/);

    // The same id, the same keys and origins: a new partner, which inherits nothing.
    const second = await createPartner(w);
    assert.notEqual(second.subject_salt, first.subject_salt);
    const svc = await jwtBearerClient(w);
    const old = await jwtBearer(w, svc, grantAssertion(w, 'gone-ulla'));
    assert.equal(old.status, 400, 'the old link assertion');
    const oldBody = await old.json();
    assert.equal(oldBody.error, 'invalid_grant');
    assert.match(oldBody.error_description, /not linked/);
    assert.equal(oldBody.access_token, undefined);
    const auto = await fetch(`${w.url}/login/auto?${new URLSearchParams({ assertion: loginAssertion(w, 'gone-ulla') })}`, { redirect: 'manual' });
    await assertRefusedPage(auto, /not linked/, 'automatic login with the old link');

    // Linked again, the same user has another subject for the new partner.
    const sub = await link(w, ulla.jar, 'gone-ulla');
    assert.notEqual(sub, ulla.sub, 'the new partner cannot recognise the old one\'s subject');
    const res = await jwtBearer(w, svc, grantAssertion(w, 'gone-ulla'));
    assert.equal(res.status, 200);
    const { access_token: accessToken } = await res.json();
    const info = await (await fetch(`${w.url}/oauth2/userinfo`, { headers: { authorization: `Bearer ${accessToken}` } })).json();
    assert.equal(info.sub, sub);
    assert.notEqual(info.sub, ulla.sub);

    assert.equal((await w.admin('/partners/gone', { method: 'DELETE' })).status, 204);
    const again = await w.admin('/partners/gone', { method: 'DELETE' });
    assert.equal(again.status, 404);
    assert.equal((await again.json()).error, 'not_found');
  } finally {
    await w.stop();
  }
});

test('fault_partner_removal_failing_half_way_is_finished_by_the_next_attempt', async () => {
  // The user's object fails once while the link is ended: the partner is gone, its links half.
  const w = await worker({ EDGEWARD_INJECT_FAULTS: 'USERS:end_link_sessions:fail1' });
  try {
    await createPartner(w);
    const vera = await linkedUser(w, 'vera');
    const failed = await w.admin('/partners/gone', { method: 'DELETE' });
    assert.equal(failed.status, 503);
    assert.equal((await failed.json()).error, 'temporarily_unavailable');
    assert.equal((await w.admin('/partners/gone')).status, 404, 'the partner itself is gone');
    const login = await fetch(`${w.url}/login/auto?${new URLSearchParams({ assertion: loginAssertion(w, 'gone-vera') })}`, { redirect: 'manual' });
    await assertRefusedPage(login, /unknown partner/, 'automatic login during the removal');
    // Not created again before what the old one held has ended.
    const early = await w.admin('/partners/gone', { method: 'PUT', body: SPEC });
    assert.equal(early.status, 503);
    const earlyBody = await early.json();
    assert.equal(earlyBody.error, 'temporarily_unavailable');
    assert.match(earlyBody.error_description, /still being ended/);
    // The same DELETE again finishes the job.
    assert.equal((await w.admin('/partners/gone', { method: 'DELETE' })).status, 204);
    await assertEnded(w, vera, 'vera');
    await createPartner(w);
  } finally {
    await w.stop();
  }
});
