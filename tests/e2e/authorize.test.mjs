// The authorization endpoint's rules (RFC 6749 §4.1.2.1, RFC 9700 §4.1): until the client and
// redirect URI are verified the user sees an error page and is never redirected; after that,
// errors go back to the client with state and iss.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker, addPartner, sleep } from './harness.mjs';
import { CookieJar, pkce, browserFlow } from './oauth.mjs';

let w;
let client;
const PASSWORD = 'correct horse battery staple';
const REDIRECT = 'https://app.acme.example/callback';

before(async () => {
  w = await startWorker({ vars: { GATE_CACHE_TTL_SECONDS: '1' } });
  await addPartner(w, 'acme', ['https://app.acme.example', 'https://other.acme.example']);
  client = await (await w.admin('/partners/acme/clients', {
    method: 'POST',
    body: { name: 'Acme', redirect_uris: [REDIRECT], scopes: ['openid', 'profile'] },
  })).json();
  await w.admin('/users/bob', { method: 'PUT', body: { password: PASSWORD, name: 'Bob' } });
});
after(() => w?.stop());

const { challenge } = pkce();
const base = () => ({
  response_type: 'code',
  client_id: client.client_id,
  redirect_uri: REDIRECT,
  scope: 'openid',
  state: 'xyz',
  code_challenge: challenge,
  code_challenge_method: 'S256',
});
const authorize = (params, jar) =>
  (jar ?? new CookieJar(w.url)).fetch(`/oauth2/authorize?${new URLSearchParams(params)}`);

async function assertErrorPage(res, message) {
  assert.equal(res.status >= 400, true, `${message}: status ${res.status}`);
  assert.equal(res.headers.get('location'), null, `${message}: never redirected`);
  assert.match(res.headers.get('content-type'), /text\/html/);
  assert.equal(res.headers.get('x-frame-options'), 'DENY');
  const html = await res.text();
  assert.doesNotMatch(html, /app\.acme\.example\/callback\?/, 'no link to the redirect URI');
}

function assertErrorRedirect(res, error) {
  assert.equal(res.status, 302);
  const loc = new URL(res.headers.get('location'));
  assert.equal(loc.origin + loc.pathname, REDIRECT);
  assert.equal(loc.searchParams.get('error'), error);
  assert.equal(loc.searchParams.get('state'), 'xyz');
  assert.equal(loc.searchParams.get('iss'), w.url);
  assert.equal(loc.searchParams.get('code'), null);
}

test('authorize_redirect_uri_variants_show_an_error_page_and_never_redirect', async () => {
  for (const redirect_uri of [
    'https://app.acme.example/callback/',
    'https://app.acme.example/callbac',
    'https://app.acme.example/callbackx',
    'https://app.acme.example/callback?extra=1',
    'https://app.acme.example/callback#frag',
    'https://APP.acme.example/callback',
    'https://app.acme.example:8443/callback',
    'https://app.acme.example:443/callback',
    'http://app.acme.example/callback',
    'https://user@app.acme.example/callback',
    'https://app.acme.example.evil.example/callback',
    'https://evil.example/callback',
    'https://other.acme.example/callback',
    '',
  ]) {
    await assertErrorPage(await authorize({ ...base(), redirect_uri }), redirect_uri);
  }
});

test('authorize_unknown_or_missing_client_shows_an_error_page', async () => {
  await assertErrorPage(await authorize({ ...base(), client_id: 'unknown-client-0000000' }), 'unknown');
  const { client_id, ...rest } = base();
  await assertErrorPage(await authorize(rest), 'missing');
});

test('authorize_repeated_parameter_shows_an_error_page', async () => {
  const q = `${new URLSearchParams(base())}&redirect_uri=${encodeURIComponent('https://evil.example/cb')}`;
  await assertErrorPage(await new CookieJar(w.url).fetch(`/oauth2/authorize?${q}`), 'repeated');
});

test('authorize_pkce_missing_or_plain_is_redirected_invalid_request', async () => {
  const { code_challenge, ...noChallenge } = base();
  assertErrorRedirect(await authorize(noChallenge), 'invalid_request');
  const { code_challenge_method, ...noMethod } = base();
  assertErrorRedirect(await authorize(noMethod), 'invalid_request');
  assertErrorRedirect(await authorize({ ...base(), code_challenge_method: 'plain' }), 'invalid_request');
  assertErrorRedirect(await authorize({ ...base(), code_challenge: 'too-short' }), 'invalid_request');
});

test('authorize_other_errors_are_redirected_with_state_and_iss', async () => {
  assertErrorRedirect(await authorize({ ...base(), response_type: 'token' }), 'unsupported_response_type');
  assertErrorRedirect(await authorize({ ...base(), scope: 'email' }), 'invalid_scope');
  assertErrorRedirect(await authorize({ ...base(), prompt: 'none login' }), 'invalid_request');
});

test('authorize_a_broken_request_object_is_an_error_page_never_a_redirect', async () => {
  // A request object may name the redirect URI itself: what cannot be read sends nobody anywhere.
  for (const request of ['eyJ', 'a.b.c', `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from('[1]').toString('base64url')}.`]) {
    const res = await authorize({ ...base(), request });
    assert.equal(res.status, 400, request);
    assert.equal(res.headers.get('location'), null);
    assert.match(await res.text(), /request object/);
  }
  const both = await authorize({ ...base(), request: 'a.b.c', request_uri: 'https://app.acme.example/ro' });
  assert.equal(both.status, 400);
  const unregistered = await authorize({ ...base(), request_uri: 'https://app.acme.example/ro' });
  assert.equal(unregistered.status, 400);
  assert.equal(unregistered.headers.get('location'), null);
  assert.match(await unregistered.text(), /request_uri is not registered/);
});

test('authorize_prompt_none_without_session_is_login_required', async () => {
  assertErrorRedirect(await authorize({ ...base(), prompt: 'none' }), 'login_required');
});

test('authorize_prompt_none_without_consent_is_consent_required', async () => {
  const jar = new CookieJar(w.url);
  let res = await jar.fetch(`/login?return_to=${encodeURIComponent('/account')}`);
  const csrf = (await res.text()).match(/name="csrf" value="([^"]+)"/)[1];
  res = await jar.postForm('/login', { csrf, return_to: '/account', username: 'bob', password: PASSWORD });
  assert.equal(res.status, 303);
  assertErrorRedirect(await authorize({ ...base(), scope: 'openid profile', prompt: 'none' }, jar), 'consent_required');
});

test('authorize_without_session_goes_to_login_then_back', async () => {
  const res = await authorize(base());
  assert.equal(res.status, 302);
  const loc = new URL(res.headers.get('location'), w.url);
  assert.equal(loc.pathname, '/login');
  const back = loc.searchParams.get('return_to');
  assert.match(back, /^\/oauth2\/authorize\?/);
  assert.equal(new URLSearchParams(back.split('?')[1]).get('state'), 'xyz');
});

test('authorize_prompt_login_and_max_age_force_a_fresh_login', async () => {
  const jar = new CookieJar(w.url);
  await browserFlow(w, { client, username: 'bob', password: PASSWORD, challenge, scope: 'openid', jar });
  const fresh = await authorize(base(), jar);
  assert.equal(fresh.status, 302);
  assert.match(fresh.headers.get('location'), /^https:\/\/app\.acme\.example\/callback\?code=/, 'session reused');
  for (const extra of [{ prompt: 'login' }, { max_age: '0' }]) {
    await sleep(1100); // auth_time has one-second resolution
    const res = await authorize({ ...base(), ...extra }, jar);
    assert.equal(res.status, 302);
    assert.equal(new URL(res.headers.get('location'), w.url).pathname, '/login', JSON.stringify(extra));
  }
  // Completing that login goes back without prompt=login (no loop) and issues a code.
  const { callback } = await browserFlow(w, { client, username: 'bob', password: PASSWORD, challenge, scope: 'openid', jar, extra: { prompt: 'login' } });
  assert.ok(callback.searchParams.get('code'));
});

test('authorize_suspended_partner_or_removed_origin_stops_at_an_error_page', async () => {
  await addPartner(w, 'fading', ['https://fading.example', 'https://kept.fading.example']);
  const c = await (await w.admin('/partners/fading/clients', {
    method: 'POST',
    body: { name: 'Fading', redirect_uris: ['https://fading.example/cb'], scopes: ['openid'] },
  })).json();
  const params = { ...base(), client_id: c.client_id, redirect_uri: 'https://fading.example/cb' };
  assert.equal((await authorize(params)).status, 302, 'works while active');
  await addPartner(w, 'fading', ['https://fading.example', 'https://kept.fading.example'], 'suspended');
  await sleep(1200);
  await assertErrorPage(await authorize(params), 'suspended');
  await addPartner(w, 'fading', ['https://kept.fading.example'], 'active');
  await sleep(1200);
  await assertErrorPage(await authorize(params), 'origin removed');
});

test('consent_form_posted_without_csrf_token_is_refused', async () => {
  const jar = new CookieJar(w.url);
  await browserFlow(w, { client, username: 'bob', password: PASSWORD, challenge, scope: 'openid', jar });
  const fields = { ...base(), scope: 'openid profile', decision: 'allow' };
  for (const csrf of [undefined, 'y'.repeat(43)]) {
    const res = await jar.postForm('/oauth2/authorize', csrf ? { ...fields, csrf } : fields);
    await assertErrorPage(res, `csrf ${csrf}`);
  }
});
