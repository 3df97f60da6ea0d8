// Which claims an app receives (OpenID Connect Core §5.4, §5.5): those of its granted scopes,
// and those it asks for by name in the `claims` parameter, only if it may have their scope and
// the person consented to it; never a claim it did not ask for.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker, addPartner } from './harness.mjs';
import { CookieJar, basicAuth, decodeJwt, formFields, pkce } from './oauth.mjs';

let w;
let client;
const PASSWORD = 'correct horse battery staple';
const REDIRECT = 'https://app.acme.example/callback';

before(async () => {
  w = await startWorker();
  await addPartner(w, 'acme', ['https://app.acme.example']);
  const res = await w.admin('/partners/acme/clients', {
    method: 'POST',
    body: { name: 'Acme', redirect_uris: [REDIRECT], scopes: ['openid', 'profile', 'email'] },
  });
  client = await res.json();
  await w.admin('/users/cara', { method: 'PUT', body: { password: PASSWORD, name: 'Cara Pupil', email: 'cara@school.example', email_verified: true } });
  await w.admin('/users/dan', { method: 'PUT', body: { password: PASSWORD, name: 'Dan Pupil', email: 'dan@school.example' } });
});
after(() => w?.stop());

/** The code flow for `username` with `extra` parameters; answers the tokens and the consent page seen. */
async function flow(username, extra) {
  const jar = new CookieJar(w.url);
  const { verifier, challenge } = pkce();
  const params = { response_type: 'code', client_id: client.client_id, redirect_uri: REDIRECT, scope: 'openid', state: 's', code_challenge: challenge, code_challenge_method: 'S256', ...extra };
  let res = await jar.fetch(`/oauth2/authorize?${new URLSearchParams(params)}`);
  let consentPage = null;
  for (let hops = 0; hops < 8 && [200, 302, 303].includes(res.status); hops++) {
    if (res.status !== 200) {
      const loc = res.headers.get('location');
      if (!loc.startsWith('/') && !loc.startsWith(w.url)) break;
      res = await jar.fetch(loc);
      continue;
    }
    const html = await res.text();
    if (html.includes('name="password"')) res = await jar.postForm('/login', { ...formFields(html), username, password: PASSWORD });
    else if (html.includes('name="decision"')) {
      consentPage = html;
      res = await jar.postForm('/oauth2/authorize', { ...formFields(html), decision: 'allow' });
    } else throw new Error(html.slice(0, 200));
  }
  const loc = new URL(res.headers.get('location'));
  if (loc.searchParams.get('error')) return { error: loc.searchParams.get('error'), consentPage };
  const token = await w.fetch('/oauth2/token', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(client.client_id, client.client_secret) },
    body: new URLSearchParams({ grant_type: 'authorization_code', code: loc.searchParams.get('code'), redirect_uri: REDIRECT, code_verifier: verifier }).toString(),
  });
  assert.equal(token.status, 200);
  const tokens = await token.json();
  const ui = await w.fetch('/oauth2/userinfo', { headers: { authorization: `Bearer ${tokens.access_token}` } });
  assert.equal(ui.status, 200);
  return { tokens, userinfo: await ui.json(), idToken: decodeJwt(tokens.id_token).payload, consentPage };
}

test('userinfo_claims_parameter_releases_an_essential_name_alone_without_the_profile_scope', async () => {
  const { userinfo, tokens, consentPage } = await flow('cara', { claims: JSON.stringify({ userinfo: { name: { essential: true } } }) });
  assert.equal(userinfo.name, 'Cara Pupil');
  assert.equal(userinfo.preferred_username, undefined, 'only the claim asked for');
  assert.equal(userinfo.email, undefined);
  assert.equal(tokens.scope, 'openid', 'the scopes granted are those asked for');
  assert.match(consentPage, /See your name/, 'the person saw what the claim belongs to');
});

test('id_token_claims_parameter_releases_named_claims_in_the_id_token', async () => {
  const { idToken, userinfo } = await flow('cara', { claims: JSON.stringify({ id_token: { email: { essential: true }, auth_time: { essential: true } } }) });
  assert.equal(idToken.email, 'cara@school.example');
  assert.equal(typeof idToken.auth_time, 'number');
  assert.equal(idToken.name, undefined);
  assert.equal(userinfo.email, undefined, 'asked for the ID token only');
});

test('userinfo_claims_parameter_ignores_claims_the_client_may_not_have_or_we_do_not_hold', async () => {
  const { userinfo } = await flow('cara', { claims: JSON.stringify({ userinfo: { roles: null, shoe_size: { essential: true } } }) });
  assert.deepEqual(Object.keys(userinfo), ['sub'], 'roles is not a scope of this client');
});

test('id_token_acr_names_the_sessions_class_and_an_essential_one_it_is_not_fails_the_authentication', async () => {
  const meta = await (await w.fetch('/.well-known/openid-configuration')).json();
  const [password, partner] = meta.acr_values_supported;
  assert.match(password, /password$/);
  const asked = await flow('cara', { acr_values: `${partner} ${password}` });
  assert.equal(asked.idToken.acr, password, 'a password sign-in');
  const notAsked = await flow('cara', {});
  assert.equal(notAsked.idToken.acr, undefined);
  const essential = await flow('cara', { claims: JSON.stringify({ id_token: { acr: { essential: true, values: [partner] } } }) });
  assert.equal(essential.error, 'access_denied', 'a failed authentication, no code');
});

test('authorize_claims_parameter_that_is_not_a_json_object_is_invalid_request', async () => {
  for (const claims of ['not json', '[]', '{"userinfo":{"name":true}}']) {
    const { error } = await flow('cara', { claims });
    assert.equal(error, 'invalid_request', claims);
  }
});

test('userinfo_email_scope_releases_email_verified_with_email', async () => {
  const verified = await flow('cara', { scope: 'openid email' });
  assert.equal(verified.userinfo.email, 'cara@school.example');
  assert.equal(verified.userinfo.email_verified, true);
  const unverified = await flow('dan', { scope: 'openid email' });
  assert.equal(unverified.userinfo.email_verified, false, 'unless the platform checked it');
});

test('userinfo_profile_scope_releases_name_username_and_updated_at', async () => {
  const { userinfo, idToken } = await flow('cara', { scope: 'openid profile' });
  assert.equal(userinfo.name, 'Cara Pupil');
  assert.equal(userinfo.preferred_username, 'cara');
  assert.equal(typeof userinfo.updated_at, 'number');
  assert.equal(userinfo.sub, idToken.sub);
  assert.equal(userinfo.email, undefined);
});

test('admin_user_email_verified_needs_an_email_and_a_boolean', async () => {
  for (const body of [{ password: PASSWORD, name: 'X', email_verified: true }, { password: PASSWORD, name: 'X', email: 'x@school.example', email_verified: 'yes' }]) {
    const res = await w.admin('/users/xavier', { method: 'PUT', body });
    assert.equal(res.status, 400);
    assert.equal((await res.json()).field, 'email_verified');
  }
});

async function introspect(token) {
  const res = await w.fetch('/oauth2/introspect', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(client.client_id, client.client_secret) },
    body: new URLSearchParams({ token }).toString(),
  });
  assert.equal(res.status, 200);
  return res.json();
}

test('introspection_answers_the_rfc7662_members_it_knows_and_username_only_with_profile', async () => {
  const withProfile = await flow('cara', { scope: 'openid profile' });
  const a = await introspect(withProfile.tokens.access_token);
  assert.equal(a.active, true);
  assert.equal(a.username, 'cara', 'the profile scope shows the username');
  const at = decodeJwt(withProfile.tokens.access_token).payload;
  assert.equal(a.exp, at.exp);
  assert.equal(a.iat, at.iat);
  assert.ok(a.nbf <= Math.floor(Date.now() / 1000));
  for (const k of ['scope', 'client_id', 'sub', 'aud', 'iss', 'jti', 'token_type']) assert.ok(a[k] !== undefined, k);
  const without = await introspect((await flow('cara', { scope: 'openid' })).tokens.access_token);
  assert.equal(without.active, true);
  assert.equal(without.username, undefined, 'not consented: not released');
});
