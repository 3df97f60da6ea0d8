// What an authorization request may be, as OpenID Connect and the client libraries partners use
// send it: by POST (OIDC Core §3.1.2.1), answered by form post (OAuth 2.0 Form Post Response
// Mode), with scopes we do not know left out, a login_hint that fills the username in, and, for
// a confidential client registered so, without PKCE (it checks its ID tokens' nonce instead,
// RFC 9700 §2.1.1). And how
// such a client may authenticate: its secret by Basic or in the body.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker, addPartner } from './harness.mjs';
import { CookieJar, basicAuth, decodeJwt, formFields, pkce, verifyJwt } from './oauth.mjs';
import { generateJwk } from '../../scripts/lib/jwk.mjs';

let w;
let client; // PKCE required (the default)
let noPkce; // a confidential client registered to send a nonce instead
const PASSWORD = 'correct horse battery staple';
const REDIRECT = 'https://app.acme.example/callback';

async function register(body) {
  const res = await w.admin('/partners/acme/clients', { method: 'POST', body: { name: 'Acme', redirect_uris: [REDIRECT], ...body } });
  assert.equal(res.status, 201, await res.clone().text());
  return res.json();
}

before(async () => {
  w = await startWorker();
  await addPartner(w, 'acme', ['https://app.acme.example']);
  client = await register({ scopes: ['openid', 'profile'] });
  noPkce = await register({ scopes: ['openid', 'profile'], require_pkce: false });
  await w.admin('/users/bob', { method: 'PUT', body: { password: PASSWORD, name: 'Bob' } });
});
after(() => w?.stop());

const request = (c, extra = {}) => {
  const { challenge } = pkce();
  return { response_type: 'code', client_id: c.client_id, redirect_uri: REDIRECT, scope: 'openid', state: 'xyz', code_challenge: challenge, code_challenge_method: 'S256', ...extra };
};
const withoutPkce = (params) => {
  const { code_challenge, code_challenge_method, ...rest } = params;
  return rest;
};

/** Follows the browser through login and consent from a first response; answers the last one. */
async function throughLoginAndConsent(jar, res) {
  for (let hops = 0; hops < 8; hops++) {
    if (res.status === 302 || res.status === 303) {
      const loc = res.headers.get('location');
      if (!loc.startsWith(w.url) && !loc.startsWith('/')) return res;
      res = await jar.fetch(loc);
      continue;
    }
    const html = await res.clone().text();
    if (res.status === 200 && html.includes('name="password"')) {
      res = await jar.postForm('/login', { ...formFields(html), username: 'bob', password: PASSWORD });
    } else if (res.status === 200 && html.includes('name="decision"')) {
      res = await jar.postForm('/oauth2/authorize', { ...formFields(html), decision: 'allow' });
    } else {
      return res;
    }
  }
  throw new Error('too many hops');
}

const codeOf = (res) => new URL(res.headers.get('location')).searchParams.get('code');

function redeem(c, code, extra = {}, auth = 'basic') {
  const fields = { grant_type: 'authorization_code', code, redirect_uri: REDIRECT, ...extra };
  const headers = { 'content-type': 'application/x-www-form-urlencoded' };
  if (auth === 'basic') headers.authorization = basicAuth(c.client_id, c.client_secret);
  else Object.assign(fields, { client_id: c.client_id, client_secret: c.client_secret });
  return w.fetch('/oauth2/token', { method: 'POST', headers, body: new URLSearchParams(fields).toString() });
}

test('authorize_by_post_is_an_authorization_request_like_get', async () => {
  const jar = new CookieJar(w.url);
  const { verifier, challenge } = pkce();
  const first = await jar.postForm('/oauth2/authorize', { ...request(client), code_challenge: challenge });
  assert.ok([302, 303].includes(first.status), `sent to login: ${first.status}`);
  assert.match(first.headers.get('location'), /^\/login\?/);
  const back = await throughLoginAndConsent(jar, first);
  const cb = new URL(back.headers.get('location'));
  assert.equal(cb.origin + cb.pathname, REDIRECT);
  assert.equal(cb.searchParams.get('state'), 'xyz');
  const res = await redeem(client, cb.searchParams.get('code'), { code_verifier: verifier });
  assert.equal(res.status, 200);
  // An error after the client is verified goes back to it, by POST as by GET.
  const bad = await new CookieJar(w.url).postForm('/oauth2/authorize', { ...request(client), prompt: 'none' });
  assert.ok([302, 303].includes(bad.status));
  assert.equal(new URL(bad.headers.get('location')).searchParams.get('error'), 'login_required');
});

test('authorize_form_post_answers_with_a_page_that_posts_code_state_and_iss_to_the_redirect_uri', async () => {
  const jar = new CookieJar(w.url);
  const res = await throughLoginAndConsent(jar, await jar.fetch(`/oauth2/authorize?${new URLSearchParams(request(client, { response_mode: 'form_post' }))}`));
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('location'), null, 'no redirect: the code travels in the form');
  assert.equal(res.headers.get('cache-control'), 'no-store');
  const csp = res.headers.get('content-security-policy');
  assert.match(csp, /script-src 'sha256-[A-Za-z0-9+/=]+'/, 'only the hashed script runs');
  assert.doesNotMatch(csp, /unsafe-inline'[^;]*script|script-src[^;]*unsafe/);
  const html = await res.text();
  assert.match(html, new RegExp(`<form method="post" action="${REDIRECT}">`));
  const fields = formFields(html);
  assert.equal(fields.state, 'xyz');
  assert.equal(fields.iss, w.url);
  assert.match(fields.code, /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
  // Errors in form_post mode are posted too.
  const denied = await new CookieJar(w.url).fetch(`/oauth2/authorize?${new URLSearchParams(request(client, { response_mode: 'form_post', prompt: 'none' }))}`);
  assert.equal(denied.status, 200);
  const err = formFields(await denied.text());
  assert.equal(err.error, 'login_required');
  assert.equal(err.state, 'xyz');
  assert.equal(err.code, undefined);
});

test('authorize_response_mode_other_than_query_or_form_post_is_refused_to_the_client', async () => {
  const res = await new CookieJar(w.url).fetch(`/oauth2/authorize?${new URLSearchParams(request(client, { response_mode: 'fragment' }))}`);
  assert.equal(res.status, 302);
  const loc = new URL(res.headers.get('location'));
  assert.equal(loc.searchParams.get('error'), 'invalid_request');
  assert.equal(loc.searchParams.get('code'), null);
});

test('authorize_unknown_scopes_are_left_out_and_the_token_names_what_was_granted', async () => {
  const jar = new CookieJar(w.url);
  const { verifier, challenge } = pkce();
  const back = await throughLoginAndConsent(jar, await jar.fetch(`/oauth2/authorize?${new URLSearchParams(request(client, { scope: 'openid unknown_scope email', code_challenge: challenge }))}`));
  const res = await redeem(client, codeOf(back), { code_verifier: verifier });
  assert.equal(res.status, 200);
  assert.equal((await res.json()).scope, 'openid');
  // Nothing the client may have is invalid_scope.
  const none = await new CookieJar(w.url).fetch(`/oauth2/authorize?${new URLSearchParams(request(client, { scope: 'email unknown_scope' }))}`);
  assert.equal(new URL(none.headers.get('location')).searchParams.get('error'), 'invalid_scope');
});

test('authorize_login_hint_fills_in_the_username_escaped', async () => {
  const jar = new CookieJar(w.url);
  const res = await jar.fetch(`/oauth2/authorize?${new URLSearchParams(request(client, { login_hint: 'bob"><script>x</script>' }))}`);
  const login = await jar.fetch(res.headers.get('location'));
  const html = await login.text();
  assert.match(html, /name="username" value="bob&quot;&gt;&lt;script&gt;x&lt;\/script&gt;"/);
  assert.doesNotMatch(html, /<script>x/);
  const plain = await jar.fetch((await jar.fetch(`/oauth2/authorize?${new URLSearchParams(request(client, { login_hint: 'bob' }))}`)).headers.get('location'));
  assert.match(await plain.text(), /name="username" value="bob"/);
});

test('authorize_without_pkce_is_refused_for_a_client_that_requires_it', async () => {
  const res = await new CookieJar(w.url).fetch(`/oauth2/authorize?${new URLSearchParams(withoutPkce(request(client, { nonce: 'n-1' })))}`);
  assert.equal(res.status, 302);
  const loc = new URL(res.headers.get('location'));
  assert.equal(loc.searchParams.get('error'), 'invalid_request');
  assert.match(loc.searchParams.get('error_description'), /PKCE/);
  assert.equal(loc.searchParams.get('code'), null);
});

test('authorize_without_pkce_needs_the_openid_scope', async () => {
  for (const extra of [{ scope: 'profile', nonce: 'n-1' }, { scope: 'profile' }]) {
    const res = await new CookieJar(w.url).fetch(`/oauth2/authorize?${new URLSearchParams(withoutPkce(request(noPkce, extra)))}`);
    assert.equal(res.status, 302);
    const loc = new URL(res.headers.get('location'));
    assert.equal(loc.searchParams.get('error'), 'invalid_request', JSON.stringify(extra));
    assert.equal(loc.searchParams.get('code'), null);
  }
});

test('token_code_without_pkce_is_redeemed_with_its_nonce_and_refuses_a_code_verifier', async () => {
  const jar = new CookieJar(w.url);
  const back = await throughLoginAndConsent(jar, await jar.fetch(`/oauth2/authorize?${new URLSearchParams(withoutPkce(request(noPkce, { nonce: 'n-42' })))}`));
  const code = codeOf(back);
  // A verifier for a code that had no challenge is a downgrade attempt: refused, code intact.
  const downgrade = await redeem(noPkce, code, { code_verifier: pkce().verifier });
  assert.equal(downgrade.status, 400);
  const body = await downgrade.json();
  assert.equal(body.error, 'invalid_grant');
  assert.equal(body.access_token, undefined);
  const res = await redeem(noPkce, code);
  assert.equal(res.status, 200);
  const tokens = await res.json();
  assert.equal(decodeJwt(tokens.id_token).payload.nonce, 'n-42');
});

test('token_secret_client_may_send_its_secret_by_basic_or_in_the_body_but_not_both', async () => {
  for (const auth of ['basic', 'post']) {
    const jar = new CookieJar(w.url);
    const { verifier, challenge } = pkce();
    const back = await throughLoginAndConsent(jar, await jar.fetch(`/oauth2/authorize?${new URLSearchParams(request(client, { code_challenge: challenge }))}`));
    const res = await redeem(client, codeOf(back), { code_verifier: verifier }, auth);
    assert.equal(res.status, 200, auth);
  }
  const wrong = await w.fetch('/oauth2/token', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'authorization_code', code: 'x.y', redirect_uri: REDIRECT, client_id: client.client_id, client_secret: 'wrong' }).toString(),
  });
  assert.equal(wrong.status, 401);
  assert.equal((await wrong.json()).error, 'invalid_client');
  const both = await w.fetch('/oauth2/token', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(client.client_id, client.client_secret) },
    body: new URLSearchParams({ grant_type: 'authorization_code', code: 'x.y', redirect_uri: REDIRECT, client_id: client.client_id, client_secret: client.client_secret }).toString(),
  });
  assert.equal(both.status, 400);
  assert.equal((await both.json()).error, 'invalid_request');
});

test('admin_client_without_an_id_token_alg_gets_rs256_id_tokens', async () => {
  assert.equal(client.id_token_signed_response_alg, 'RS256');
  const jar = new CookieJar(w.url);
  const { verifier, challenge } = pkce();
  const back = await throughLoginAndConsent(jar, await jar.fetch(`/oauth2/authorize?${new URLSearchParams(request(client, { code_challenge: challenge }))}`));
  const tokens = await (await redeem(client, codeOf(back), { code_verifier: verifier })).json();
  assert.equal(decodeJwt(tokens.id_token).header.alg, 'RS256');
});

test('admin_client_for_an_id_token_alg_without_a_key_is_refused_at_registration', async () => {
  const w2 = await startWorker({ signingKeys: { keys: [generateJwk('EdDSA')] } });
  try {
    await addPartner(w2, 'acme', ['https://app.acme.example']);
    for (const body of [{}, { id_token_signed_response_alg: 'RS256' }, { id_token_signed_response_alg: 'ES256' }]) {
      const res = await w2.admin('/partners/acme/clients', { method: 'POST', body: { name: 'Acme', redirect_uris: [REDIRECT], ...body } });
      assert.equal(res.status, 400, JSON.stringify(body));
      const err = await res.json();
      assert.equal(err.error, 'invalid_request');
      assert.equal(err.field, 'id_token_signed_response_alg');
    }
    const ok = await w2.admin('/partners/acme/clients', { method: 'POST', body: { name: 'Acme', redirect_uris: [REDIRECT], id_token_signed_response_alg: 'EdDSA' } });
    assert.equal(ok.status, 201);
  } finally {
    await w2.stop();
  }
});

test('id_token_for_a_client_registered_for_ed25519_is_signed_under_that_name_rfc9864', async () => {
  const ed = await register({ scopes: ['openid'], id_token_signed_response_alg: 'Ed25519' });
  assert.equal(ed.id_token_signed_response_alg, 'Ed25519');
  const jar = new CookieJar(w.url);
  const { verifier, challenge } = pkce();
  const back = await throughLoginAndConsent(jar, await jar.fetch(`/oauth2/authorize?${new URLSearchParams(request(ed, { code_challenge: challenge }))}`));
  const tokens = await (await redeem(ed, codeOf(back), { code_verifier: verifier })).json();
  const { header } = decodeJwt(tokens.id_token);
  assert.equal(header.alg, 'Ed25519');
  const jwks = await (await w.fetch('/.well-known/jwks.json')).json();
  const jwk = jwks.keys.find((k) => k.kid === header.kid);
  assert.equal(jwk.alg, 'Ed25519', 'the JWK of that kid names the same algorithm');
  assert.equal(verifyJwt(tokens.id_token, jwks).aud, ed.client_id);
  const meta = await (await w.fetch('/.well-known/openid-configuration')).json();
  assert.ok(meta.id_token_signing_alg_values_supported.includes('Ed25519'));
});
