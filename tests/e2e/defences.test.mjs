// Defences that are headers, cookie attributes and limits: each asserted where a person or a
// client meets it, so that a change to one of them fails a test.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker, addPartner } from './harness.mjs';
import { CookieJar, basicAuth, formFields, pkce } from './oauth.mjs';

const PASSWORD = 'defence password 1234';
const ORIGIN = 'https://app.acme.example';
const PAGE_HEADERS = {
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'x-content-type-options': 'nosniff',
  'cache-control': 'no-store',
  'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'",
};

let w;
let client;
before(async () => {
  w = await startWorker();
  await addPartner(w, 'acme', [ORIGIN]);
  client = await (await w.admin('/partners/acme/clients', {
    method: 'POST',
    body: { name: 'Acme', redirect_uris: [`${ORIGIN}/cb`], scopes: ['openid', 'profile'] },
  })).json();
  await w.admin('/users/ida', { method: 'PUT', body: { password: PASSWORD, name: 'Ida' } });
  await w.admin('/users/jon', { method: 'PUT', body: { password: PASSWORD, name: 'Jon' } });
});
after(() => w?.stop());

function assertPageHeaders(res, what) {
  assert.match(res.headers.get('content-type'), /^text\/html/, what);
  for (const [name, value] of Object.entries(PAGE_HEADERS)) {
    assert.equal(res.headers.get(name), value, `${what}: ${name}`);
  }
}

async function signIn(jar, username, returnTo = '/account') {
  const res = await jar.fetch(`/login?return_to=${encodeURIComponent(returnTo)}`);
  return jar.postForm('/login', { ...formFields(await res.text()), username, password: PASSWORD });
}

test('pages_forbid_framing_scripts_sniffing_caching_and_referrers', async () => {
  const jar = new CookieJar(w.url);
  const login = await jar.fetch('/login?return_to=%2Faccount');
  assertPageHeaders(login, 'login page');
  assert.match(await login.text(), /name="password"/);
  assert.equal((await jar.postForm('/login', { ...formFields(await (await jar.fetch('/login?return_to=%2Faccount')).text()), username: 'ida', password: PASSWORD })).status, 303);

  const { challenge } = pkce();
  const q = new URLSearchParams({
    response_type: 'code', client_id: client.client_id, redirect_uri: `${ORIGIN}/cb`, scope: 'openid profile',
    state: 's', code_challenge: challenge, code_challenge_method: 'S256',
  });
  const consent = await jar.fetch(`/oauth2/authorize?${q}`);
  assert.equal(consent.status, 200);
  assertPageHeaders(consent, 'consent page');
  assert.match(await consent.text(), /name="decision"/);

  const account = await jar.fetch('/account');
  assert.equal(account.status, 200);
  assertPageHeaders(account, 'account page');

  const logout = await jar.fetch('/oauth2/logout');
  assert.equal(logout.status, 200);
  assertPageHeaders(logout, 'logout confirmation');

  const error = await jar.fetch('/oauth2/authorize?client_id=nope');
  assert.equal(error.status, 400);
  assertPageHeaders(error, 'error page');
});

test('cookies_on_an_https_issuer_are_host_prefixed_secure_httponly_lax', async () => {
  const https = await startWorker({ vars: { ISSUER: 'https://id.school.example' } });
  try {
    await https.admin('/users/kim', { method: 'PUT', body: { password: PASSWORD, name: 'Kim' } });
    const jar = new CookieJar(https.url);
    const page = await jar.fetch('/login?return_to=%2Faccount');
    assert.equal(page.status, 200);
    const csrf = page.headers.getSetCookie();
    assert.equal(csrf.length, 1);
    assert.match(csrf[0], /^__Host-edgeward_csrf=[^;]+; Path=\/; HttpOnly; SameSite=Lax; Max-Age=\d+; Secure$/);
    const res = await jar.postForm('/login', { ...formFields(await page.text()), username: 'kim', password: PASSWORD });
    assert.equal(res.status, 303);
    const session = res.headers.getSetCookie().find((c) => c.includes('session'));
    assert.match(session, /^__Host-edgeward_session=[^;]+; Path=\/; HttpOnly; SameSite=Lax; Max-Age=43200; Secure$/);
    assert.doesNotMatch(session, /Domain=/i, 'a __Host- cookie has no Domain');
  } finally {
    await https.stop();
  }
});

test('https_issuer_sends_hsts_on_every_answer_and_loopback_does_not', async () => {
  const https = await startWorker({ vars: { ISSUER: 'https://id.school.example' } });
  try {
    for (const p of ['/healthz', '/login?return_to=%2Faccount', '/.well-known/jwks.json', '/nowhere', '/oauth2/token']) {
      const res = await https.fetch(p);
      assert.equal(res.headers.get('strict-transport-security'), 'max-age=31536000', p);
    }
  } finally {
    await https.stop();
  }
  const local = await w.fetch('/healthz');
  assert.equal(local.headers.get('strict-transport-security'), null, 'not on a loopback http issuer');
});

test('login_replaces_a_planted_session_cookie_with_a_new_secret', async () => {
  // Session fixation: a cookie set before the login (here, a session of jon's that an attacker
  // holds) is never the one the login authenticates.
  const attacker = new CookieJar(w.url);
  assert.equal((await signIn(attacker, 'jon')).status, 303);
  const planted = attacker.cookies.get('edgeward_session');
  assert.ok(planted);

  const victim = new CookieJar(w.url);
  victim.cookies.set('edgeward_session', planted);
  assert.equal((await signIn(victim, 'ida')).status, 303);
  const fresh = victim.cookies.get('edgeward_session');
  assert.notEqual(fresh, planted, 'the login set a new session cookie');
  assert.match(fresh, /^ida\./);
  const page = await (await victim.fetch('/account')).text();
  assert.match(page, /Ida/);
  // The attacker's cookie still names jon's session, never ida's.
  const theirs = await (await attacker.fetch('/account')).text();
  assert.doesNotMatch(theirs, /Ida/);
});

test('form_bodies_are_refused_one_byte_over_16_kib', async () => {
  const form = (bytes) => {
    const head = 'grant_type=client_credentials&pad=';
    return head + 'x'.repeat(bytes - head.length);
  };
  const post = (body) => fetch(`${w.url}/oauth2/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body });
  const atLimit = await post(form(16 * 1024));
  assert.equal(atLimit.status, 401, 'read whole, then refused for the missing client');
  assert.equal((await atLimit.json()).error, 'invalid_client');
  const over = await post(form(16 * 1024 + 1));
  assert.equal(over.status, 400);
  const body = await over.json();
  assert.equal(body.error, 'invalid_request');
  assert.match(body.error_description, /too large/);
});

test('authorizations_per_user_are_capped_so_revoking_them_stays_bounded', async () => {
  // Each authorization with remembered consent issues a code whose grant the user's object
  // lists (so a new password can revoke it). 256 may be live at once; the next is refused.
  await w.admin('/users/liv', { method: 'PUT', body: { password: PASSWORD, name: 'Liv' } });
  const jar = new CookieJar(w.url);
  assert.equal((await signIn(jar, 'liv')).status, 303);
  const { verifier, challenge } = pkce();
  const q = new URLSearchParams({
    response_type: 'code', client_id: client.client_id, redirect_uri: `${ORIGIN}/cb`, scope: 'openid',
    state: 's', code_challenge: challenge, code_challenge_method: 'S256',
  });
  let res = await jar.fetch(`/oauth2/authorize?${q}`);
  res = await jar.postForm('/oauth2/authorize', { ...formFields(await res.text()), decision: 'allow' });
  assert.equal(res.status, 303);
  const issued = [new URL(res.headers.get('location')).searchParams.get('code')];
  for (let n = 1; n < 256; n++) {
    res = await jar.fetch(`/oauth2/authorize?${q}`);
    assert.equal(res.status, 302, `authorization ${n + 1}`);
    issued.push(new URL(res.headers.get('location')).searchParams.get('code'));
    assert.ok(issued.at(-1), `code ${n + 1}`);
  }
  res = await jar.fetch(`/oauth2/authorize?${q}`);
  assert.equal(res.status, 302);
  const back = new URL(res.headers.get('location'));
  assert.equal(back.searchParams.get('error'), 'temporarily_unavailable');
  assert.equal(back.searchParams.get('code'), null, 'no code past the cap');
  // A new password revokes all 256 (batches of 16): no code of the batch redeems any more.
  res = await w.admin('/users/liv', { method: 'PUT', body: { password: 'another password 777', name: 'Liv' } });
  assert.equal(res.status, 200);
  for (const code of [issued[0], issued[100], issued[255]]) {
    const t = await fetch(`${w.url}/oauth2/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(client.client_id, client.client_secret) },
      body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: `${ORIGIN}/cb`, code_verifier: verifier }).toString(),
    });
    assert.equal(t.status, 400);
    const body = await t.json();
    assert.equal(body.error, 'invalid_grant');
    assert.match(body.error_description, /revoked/);
  }
});
