// RS256 ID tokens for clients that need them (signed by WebCrypto), and RP-initiated logout.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker, addPartner } from './harness.mjs';
import { CookieJar, pkce, basicAuth, browserFlow, verifyJwt, decodeJwt, formFields } from './oauth.mjs';

let w;
let rsClient;
let jwks;
const PASSWORD = 'correct horse battery staple';
const REDIRECT = 'https://app.acme.example/cb';

before(async () => {
  w = await startWorker();
  await addPartner(w, 'acme', ['https://app.acme.example']);
  rsClient = await (await w.admin('/partners/acme/clients', {
    method: 'POST',
    body: { name: 'Legacy', redirect_uris: [REDIRECT], post_logout_redirect_uris: ['https://app.acme.example/bye'], scopes: ['openid', 'profile'], id_token_signed_response_alg: 'RS256' },
  })).json();
  await w.admin('/users/erin', { method: 'PUT', body: { password: PASSWORD, name: 'Erin' } });
  jwks = await (await w.fetch('/.well-known/jwks.json')).json();
});
after(() => w?.stop());

async function login(jar, username = 'erin') {
  const { verifier, challenge } = pkce();
  const { callback } = await browserFlow(w, { client: rsClient, username, password: PASSWORD, challenge, scope: 'openid profile', jar });
  const res = await fetch(`${w.url}/oauth2/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(rsClient.client_id, rsClient.client_secret) },
    body: new URLSearchParams({ grant_type: 'authorization_code', code: callback.searchParams.get('code'), redirect_uri: REDIRECT, code_verifier: verifier }),
  });
  assert.equal(res.status, 200);
  return res.json();
}

test('id_token_rs256_for_a_client_registered_for_it', async () => {
  const t = await login(new CookieJar(w.url));
  assert.equal(decodeJwt(t.id_token).header.alg, 'RS256');
  const id = verifyJwt(t.id_token, jwks);
  assert.equal(id.aud, rsClient.client_id);
  assert.equal(decodeJwt(t.access_token).header.alg, 'EdDSA', 'access tokens stay EdDSA');
});

test('logout_with_valid_hint_ends_the_session_and_returns_to_a_registered_uri', async () => {
  const jar = new CookieJar(w.url);
  const t = await login(jar);
  const params = new URLSearchParams({ id_token_hint: t.id_token, post_logout_redirect_uri: 'https://app.acme.example/bye', state: 'later' });
  const res = await jar.fetch(`/oauth2/logout?${params}`);
  assert.equal(res.status, 302);
  assert.equal(res.headers.get('location'), 'https://app.acme.example/bye?state=later');
  // The session is gone: prompt=none now answers login_required.
  const { challenge } = pkce();
  const again = await jar.fetch(`/oauth2/authorize?${new URLSearchParams({
    response_type: 'code', client_id: rsClient.client_id, redirect_uri: REDIRECT, scope: 'openid',
    code_challenge: challenge, code_challenge_method: 'S256', prompt: 'none', state: 's',
  })}`);
  assert.equal(new URL(again.headers.get('location')).searchParams.get('error'), 'login_required');
});

test('logout_to_an_unregistered_uri_asks_first_and_never_redirects_there', async () => {
  const jar = new CookieJar(w.url);
  const t = await login(jar);
  for (const uri of ['https://evil.example/', 'https://app.acme.example/bye/', 'https://app.acme.example/bye?foo=bar', 'https://app.acme.example/cb']) {
    const res = await jar.fetch(`/oauth2/logout?${new URLSearchParams({ id_token_hint: t.id_token, post_logout_redirect_uri: uri, state: 's' })}`);
    await assertAskedFirstWithoutRedirect(res, uri);
  }
  // Not signed out silently: the session still stands (prompt=none issues a code).
  const { challenge } = pkce();
  const silent = await jar.fetch(`/oauth2/authorize?${new URLSearchParams({
    response_type: 'code', client_id: rsClient.client_id, redirect_uri: REDIRECT, scope: 'openid',
    code_challenge: challenge, code_challenge_method: 'S256', prompt: 'none', state: 's',
  })}`);
  assert.ok(new URL(silent.headers.get('location')).searchParams.get('code'), 'still signed in');
  // Confirming signs out, and still goes nowhere but our page.
  const page = await jar.fetch(`/oauth2/logout?${new URLSearchParams({ id_token_hint: t.id_token, post_logout_redirect_uri: 'https://evil.example/' })}`);
  const done = await jar.postForm('/oauth2/logout', formFields(await page.text()));
  await assertSignedOutPageWithoutRedirect(done, 'confirmed');
});

test('logout_without_a_valid_hint_asks_first', async () => {
  const jar = new CookieJar(w.url);
  await login(jar);
  const t = await login(jar);
  const tampered = t.id_token.slice(0, -4) + 'AAAA';
  for (const hint of [undefined, tampered]) {
    const q = new URLSearchParams({ post_logout_redirect_uri: 'https://app.acme.example/bye', client_id: rsClient.client_id, ...(hint ? { id_token_hint: hint } : {}) });
    const res = await jar.fetch(`/oauth2/logout?${q}`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('location'), null);
    const html = await res.text();
    assert.match(html, /Sign out of your school account\?/);
    if (hint === undefined) {
      // Confirming signs out; a post without the CSRF token does not.
      const fields = formFields(html);
      const { csrf, ...noCsrf } = fields;
      assert.equal((await jar.postForm('/oauth2/logout', noCsrf)).status, 403);
      const done = await jar.postForm('/oauth2/logout', fields);
      assert.equal(done.status, 303);
      assert.equal(done.headers.get('location'), 'https://app.acme.example/bye');
    }
  }
});

test('logout_hint_of_another_user_does_not_sign_the_session_out', async () => {
  await w.admin('/users/mallory', { method: 'PUT', body: { password: PASSWORD, name: 'Mallory' } });
  const attacker = await login(new CookieJar(w.url), 'mallory');
  const victim = new CookieJar(w.url);
  await login(victim);
  const res = await victim.fetch(`/oauth2/logout?${new URLSearchParams({ id_token_hint: attacker.id_token, post_logout_redirect_uri: 'https://app.acme.example/bye' })}`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('location'), null);
  assert.match(await res.text(), /Sign out of your school account\?/);
  // Still signed in: prompt=none issues a code.
  const { challenge } = pkce();
  const again = await victim.fetch(`/oauth2/authorize?${new URLSearchParams({
    response_type: 'code', client_id: rsClient.client_id, redirect_uri: REDIRECT, scope: 'openid',
    code_challenge: challenge, code_challenge_method: 'S256', prompt: 'none', state: 's',
  })}`);
  assert.ok(new URL(again.headers.get('location')).searchParams.get('code'), 'session intact');
});

/** A partner with a client whose first redirect URI is the login callback; an ID token for `jar`. */
async function partnerClientLogin(id, origins, redirectUris, jar) {
  await addPartner(w, id, origins);
  const client = await (await w.admin(`/partners/${id}/clients`, {
    method: 'POST',
    body: { name: `App ${id}`, redirect_uris: redirectUris.slice(0, 1), post_logout_redirect_uris: redirectUris.slice(1), scopes: ['openid'] },
  })).json();
  return { client, idToken: await idTokenFor(client, jar) };
}

async function idTokenFor(client, jar) {
  const { verifier, challenge } = pkce();
  const { callback } = await browserFlow(w, { client, username: 'erin', password: PASSWORD, challenge, scope: 'openid', jar });
  const res = await fetch(`${w.url}/oauth2/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(client.client_id, client.client_secret) },
    body: new URLSearchParams({ grant_type: 'authorization_code', code: callback.searchParams.get('code'), redirect_uri: client.redirect_uris[0], code_verifier: verifier }),
  });
  assert.equal(res.status, 200);
  return (await res.json()).id_token;
}

async function assertSignedOutPageWithoutRedirect(res, why) {
  assert.equal(res.status, 200, why);
  assert.equal(res.headers.get('location'), null, why);
  assert.match(await res.text(), /You are signed out/, why);
}

/** A return address we will not follow: the person is asked first, and not sent anywhere. */
async function assertAskedFirstWithoutRedirect(res, why) {
  assert.equal(res.status, 200, why);
  assert.equal(res.headers.get('location'), null, why);
  assert.match(await res.text(), /Sign out of your school account\?/, why);
}

test('logout_of_a_suspended_partners_client_shows_the_page_instead_of_redirecting', async () => {
  const bye = 'https://app.susp.example/bye';
  const active = new CookieJar(w.url);
  const { client, idToken } = await partnerClientLogin('susp', ['https://app.susp.example'], ['https://app.susp.example/cb', bye], active);
  // While the partner is active, the registered URI is where logout goes.
  let res = await active.fetch(`/oauth2/logout?${new URLSearchParams({ id_token_hint: idToken, post_logout_redirect_uri: bye })}`);
  assert.equal(res.status, 302);
  assert.equal(res.headers.get('location'), bye);

  const jar = new CookieJar(w.url);
  const hint = await idTokenFor(client, jar);
  await addPartner(w, 'susp', ['https://app.susp.example'], 'suspended');
  res = await jar.fetch(`/oauth2/logout?${new URLSearchParams({ id_token_hint: hint, post_logout_redirect_uri: bye, state: 's' })}`);
  await assertAskedFirstWithoutRedirect(res, 'hinted GET');
  // The confirmed form (client_id, no hint) does not redirect either.
  const page = await jar.fetch(`/oauth2/logout?${new URLSearchParams({ client_id: client.client_id, post_logout_redirect_uri: bye })}`);
  const done = await jar.postForm('/oauth2/logout', formFields(await page.text()));
  await assertSignedOutPageWithoutRedirect(done, 'confirmed POST');
  // Removed altogether: the same.
  assert.equal((await w.admin('/partners/susp', { method: 'DELETE' })).status, 204);
  res = await jar.fetch(`/oauth2/logout?${new URLSearchParams({ id_token_hint: hint, post_logout_redirect_uri: bye })}`);
  assert.equal(res.headers.get('location'), null, 'removed partner');
});

test('logout_never_redirects_to_an_origin_the_partner_no_longer_holds', async () => {
  const oldBye = 'https://old.moved.example/bye';
  const origins = ['https://app.moved.example', 'https://old.moved.example'];
  const first = new CookieJar(w.url);
  const { client, idToken } = await partnerClientLogin('moved', origins, ['https://app.moved.example/cb', oldBye, 'https://app.moved.example/bye'], first);
  let res = await first.fetch(`/oauth2/logout?${new URLSearchParams({ id_token_hint: idToken, post_logout_redirect_uri: oldBye })}`);
  assert.equal(res.status, 302, 'the origin is still the partner\'s');
  assert.equal(res.headers.get('location'), oldBye);

  // The partner gives the origin up (it may be someone else's next); the client still lists the URI.
  await addPartner(w, 'moved', ['https://app.moved.example']);
  assert.ok((await (await w.admin(`/clients/${client.client_id}`)).json()).post_logout_redirect_uris.includes(oldBye));
  const jar = new CookieJar(w.url);
  const hint = await idTokenFor(client, jar);
  res = await jar.fetch(`/oauth2/logout?${new URLSearchParams({ id_token_hint: hint, post_logout_redirect_uri: oldBye })}`);
  await assertAskedFirstWithoutRedirect(res, 'origin given up');
  // A URI on the origin it kept still works.
  const again = new CookieJar(w.url);
  const kept = await idTokenFor(client, again);
  res = await again.fetch(`/oauth2/logout?${new URLSearchParams({ id_token_hint: kept, post_logout_redirect_uri: 'https://app.moved.example/bye' })}`);
  assert.equal(res.status, 302);
  assert.equal(res.headers.get('location'), 'https://app.moved.example/bye');
});
