// Dynamic Client Registration (RFC 7591) and client management (RFC 7592) against the built
// Worker: never open (an operator's initial access token per partner), within the token's
// grant types and scopes, on the partner's origins, with registration access tokens stored
// hashed, rotated on update and revocable. Also openid-client 5's own `Client.register`, on its
// defaults. The conformance suite's Dynamic OP modules are in conformance_dynamic_op.test.mjs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { randomUUID } from 'node:crypto';
import { startWorker, addPartner } from './harness.mjs';
import { CookieJar, basicAuth, browserFlow, decodeJwt, formFields, pkce } from './oauth.mjs';

const require = createRequire(import.meta.url);
const oc5 = require('openid-client-5');

const PASSWORD = 'correct horse battery staple';
/** Registration calls a minute per partner and per client, raised for the calls of this file. */
const LIMIT = 80;
const SITE = 'https://app.acme.example';
const REDIRECT = `${SITE}/callback`;
let w;
let meta;

before(async () => {
  w = await startWorker({ vars: { REGISTRATIONS_PER_MINUTE: String(LIMIT) } });
  await addPartner(w, 'acme', [SITE]);
  await addPartner(w, 'other', ['https://other.example']);
  await w.admin('/users/ada', { method: 'PUT', body: { password: PASSWORD, name: 'Ada Pupil', email: 'ada@school.example', email_verified: true } });
  meta = await (await w.fetch('/.well-known/openid-configuration')).json();
});
after(() => w?.stop());

/** An initial access token for `partner` (admin API); answers the created record with `token`. */
async function initialToken(partner, body = {}) {
  const res = await w.admin(`/partners/${partner}/registration-tokens`, {
    method: 'POST',
    body: { scopes: ['openid', 'profile', 'email', 'offline_access'], ...body },
  });
  assert.equal(res.status, 201, await res.clone().text());
  return res.json();
}

function register(token, metadata, headers = {}) {
  return w.fetch('/oauth2/register', {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
    body: JSON.stringify(metadata),
  });
}

function manage(client, token, init = {}) {
  const path = new URL(client.registration_client_uri).pathname;
  const headers = { accept: 'application/json', authorization: `Bearer ${token}`, ...(init.body ? { 'content-type': 'application/json' } : {}) };
  return w.fetch(path, { ...init, headers, body: init.body && JSON.stringify(init.body) });
}

async function clientsOf(partner) {
  const res = await w.admin(`/partners/${partner}/clients`);
  assert.equal(res.status, 200);
  return (await res.json()).clients;
}

const APP = { client_name: 'Registered App', redirect_uris: [REDIRECT] };

/** Asserts an RFC 7591 §3.2.2 error answer. */
async function assertRefused(res, status, error) {
  const body = await res.json();
  assert.equal(res.status, status, JSON.stringify(body));
  assert.equal(body.error, error, JSON.stringify(body));
  assert.equal(body.client_id, undefined, 'no client is registered');
  assert.equal(body.registration_access_token, undefined);
  assert.match(res.headers.get('content-type'), /^application\/json/);
  return body;
}

test('registration_endpoint_is_advertised_and_refuses_a_request_without_an_initial_access_token', async () => {
  assert.equal(meta.registration_endpoint, `${w.url}/oauth2/register`);
  const before = (await clientsOf('acme')).length;
  const res = await register(null, APP);
  assert.equal(res.status, 401);
  assert.match(res.headers.get('www-authenticate'), /^Bearer realm="edgeward"$/);
  await assertRefused(res, 401, 'unauthorized');
  const wrong = await register('not-a-token-we-issued', APP);
  assert.match(wrong.headers.get('www-authenticate'), /error="invalid_token"/);
  await assertRefused(wrong, 401, 'invalid_token');
  // The token in the query string or the body is not a credential.
  const { token } = await initialToken('acme');
  const inBody = await register(null, { ...APP, access_token: token });
  await assertRefused(inBody, 401, 'unauthorized');
  assert.equal((await clientsOf('acme')).length, before, 'nothing was registered');
});

test('registration_creates_a_client_of_the_tokens_partner_and_shows_its_credentials_once', async () => {
  const { token, id: tokenId } = await initialToken('acme');
  const res = await register(token, { ...APP, post_logout_redirect_uris: [`${SITE}/bye`], contacts: ['dev@acme.example'], some_extension: true });
  assert.equal(res.status, 201);
  assert.equal(res.headers.get('cache-control'), 'no-store');
  assert.equal(res.headers.get('pragma'), 'no-cache');
  const client = await res.json();
  assert.match(client.client_id, /^[A-Za-z0-9_-]{22}$/);
  assert.match(client.client_secret, /^[A-Za-z0-9_-]{43}$/);
  assert.equal(client.client_secret_expires_at, 0);
  assert.equal(client.registration_client_uri, `${w.url}/oauth2/register/${client.client_id}`);
  assert.match(client.registration_access_token, /^[A-Za-z0-9_-]{43}$/);
  assert.deepEqual(client.grant_types, ['authorization_code'], 'RFC 7591 §2: the default grant type');
  assert.deepEqual(client.response_types, ['code']);
  assert.equal(client.token_endpoint_auth_method, 'client_secret_basic');
  assert.equal(client.scope, 'openid profile email offline_access', "the token's scopes when the client names none");
  assert.equal(client.id_token_signed_response_alg, 'RS256');
  assert.equal(client.require_pkce, true);
  assert.equal(client.subject_type, 'pairwise');
  assert.deepEqual(client.post_logout_redirect_uris, [`${SITE}/bye`]);
  assert.equal(client.contacts, undefined, 'metadata we do not keep is not echoed');
  assert.equal(client.some_extension, undefined);
  // The operator sees it under the partner, without any secret.
  const admin = await (await w.admin(`/clients/${client.client_id}`)).json();
  assert.equal(admin.partner_id, 'acme');
  assert.equal(admin.name, 'Registered App');
  assert.equal(admin.registered_with, tokenId, 'the operator sees which token registered it');
  assert.equal(admin.secret_hash, undefined);
  assert.equal(admin.client_secret, undefined);
  // Reading it back never shows the secret again.
  const read = await (await manage(client, client.registration_access_token)).json();
  assert.equal(read.client_secret, undefined);
  assert.equal(read.client_secret_expires_at, 0);
  assert.equal(read.client_id, client.client_id);
});

test('registration_refuses_redirect_uris_off_the_partners_origins_or_with_a_fragment', async () => {
  const { token } = await initialToken('acme');
  const before = (await clientsOf('acme')).length;
  // oidcc-redirect-uri-regfrag: EnsureContentTypeJson, EnsureHttpStatusCodeIs400,
  // CheckErrorFromDynamicRegistrationEndpointIsInvalidRedirectUriOrInvalidClientMetadata.
  const frag = await assertRefused(await register(token, { ...APP, redirect_uris: [`${REDIRECT}#foobar`] }), 400, 'invalid_redirect_uri');
  assert.equal(frag.field, 'redirect_uris[0]');
  for (const uri of ['https://other.example/callback', 'https://evil.example/cb', 'http://app.acme.example/callback', 'javascript:alert(1)']) {
    await assertRefused(await register(token, { ...APP, redirect_uris: [uri] }), 400, 'invalid_redirect_uri');
  }
  await assertRefused(await register(token, { ...APP, post_logout_redirect_uris: ['https://evil.example/bye'] }), 400, 'invalid_redirect_uri');
  await assertRefused(await register(token, { client_name: 'No URIs' }), 400, 'invalid_redirect_uri');
  assert.equal((await clientsOf('acme')).length, before, 'nothing was registered');
});

test('registration_keeps_clients_within_the_grant_types_scopes_and_methods_the_operator_allowed', async () => {
  const { token } = await initialToken('acme', { grant_types: ['authorization_code', 'refresh_token'], scopes: ['openid', 'email'] });
  const before = (await clientsOf('acme')).length;
  const cases = [
    [{ grant_types: ['client_credentials'] }, 'grant_types'],
    [{ grant_types: ['authorization_code', 'urn:ietf:params:oauth:grant-type:jwt-bearer'] }, 'grant_types'],
    [{ grant_types: ['implicit'] }, 'grant_types[0]'],
    [{ scope: 'openid roles' }, 'scope'],
    [{ response_types: ['token'] }, 'response_types'],
    [{ response_types: ['code id_token'] }, 'response_types'],
    [{ require_pkce: false }, 'require_pkce'],
    [{ token_endpoint_auth_method: 'client_secret_jwt' }, 'token_endpoint_auth_method'],
    [{ token_endpoint_auth_method: 'private_key_jwt' }, 'jwks'],
    [{ jwks_uri: 'https://evil.example/jwks.json', token_endpoint_auth_method: 'private_key_jwt' }, 'jwks_uri'],
    [{ jwks_uri: 'http://app.acme.example/jwks.json', token_endpoint_auth_method: 'private_key_jwt' }, 'jwks_uri'],
    [{ jwks_uri: `${SITE}/jwks.json`, jwks: { keys: [] }, token_endpoint_auth_method: 'private_key_jwt' }, 'jwks_uri'],
    [{ userinfo_encrypted_response_alg: 'RSA-OAEP' }, 'userinfo_encrypted_response_alg'],
    [{ userinfo_signed_response_alg: 'ES256' }, 'userinfo_signed_response_alg'],
    [{ request_uris: ['https://evil.example/r'] }, 'request_uris[0]'],
    [{ request_object_signing_alg: 'HS256' }, 'request_object_signing_alg'],
    [{ subject_type: 'public' }, 'subject_type'],
    [{ id_token_signed_response_alg: 'none' }, 'id_token_signed_response_alg'],
    [{ id_token_signed_response_alg: 'HS256' }, 'id_token_signed_response_alg'],
    [{ jwks: { keys: [{ kty: 'oct', k: 'c2VjcmV0' }] } }, 'jwks.keys[0]'],
    [{ client_name: '' }, 'client_name'],
    [{ client_name: 'App\u202e' }, 'client_name'],
  ];
  for (const [extra, field] of cases) {
    const body = await assertRefused(await register(token, { ...APP, ...extra }), 400, 'invalid_client_metadata');
    assert.equal(body.field, field, JSON.stringify(extra));
  }
  await assertRefused(await register(token, { ...APP, software_statement: 'a.b.c' }), 400, 'unapproved_software_statement');
  // Not JSON, not an object, not JSON's media type.
  const notJson = await w.fetch('/oauth2/register', { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: '{"client_name":' });
  await assertRefused(notJson, 400, 'invalid_client_metadata');
  const form = await w.fetch('/oauth2/register', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Bearer ${token}` }, body: 'client_name=x' });
  await assertRefused(form, 415, 'unsupported_media_type');
  assert.equal((await clientsOf('acme')).length, before, 'nothing was registered');
  // Within the policy, it registers.
  const ok = await register(token, { ...APP, grant_types: ['authorization_code', 'refresh_token'], scope: 'openid email' });
  assert.equal(ok.status, 201, await ok.clone().text());
});

test('an_initial_access_token_registers_only_for_its_own_partner_and_not_once_the_partner_is_suspended', async () => {
  const { token } = await initialToken('other');
  // Its partner's origins only: acme's redirect URI is not other's.
  await assertRefused(await register(token, APP), 400, 'invalid_redirect_uri');
  const mine = await register(token, { ...APP, redirect_uris: ['https://other.example/cb'] });
  assert.equal(mine.status, 201);
  assert.equal((await (await w.admin(`/clients/${(await mine.json()).client_id}`)).json()).partner_id, 'other');
  await addPartner(w, 'sleepy', ['https://sleepy.example']);
  const sleepy = await initialToken('sleepy');
  await addPartner(w, 'sleepy', ['https://sleepy.example'], 'suspended');
  await assertRefused(await register(sleepy.token, { ...APP, redirect_uris: ['https://sleepy.example/cb'] }), 403, 'partner_suspended');
});

test('a_revoked_initial_access_token_and_one_of_a_removed_partner_register_nothing', async () => {
  const record = await initialToken('acme', { label: 'to revoke' });
  const listed = (await (await w.admin('/partners/acme/registration-tokens')).json()).registration_tokens;
  const mine = listed.find((t) => t.id === record.id);
  assert.equal(mine.label, 'to revoke');
  assert.equal(mine.token, undefined, 'the token itself is shown once, at creation');
  assert.ok(!JSON.stringify(listed).includes(record.token), 'no listing carries a token');
  assert.equal((await w.admin(`/registration-tokens/${record.id}`, { method: 'DELETE' })).status, 204);
  await assertRefused(await register(record.token, APP), 401, 'invalid_token');
  assert.equal((await w.admin(`/registration-tokens/${record.id}`, { method: 'DELETE' })).status, 404);
  assert.equal((await w.admin('/registration-tokens/nope', { method: 'DELETE' })).status, 404);

  await addPartner(w, 'leaving', ['https://leaving.example']);
  const leaving = await initialToken('leaving');
  assert.equal((await w.admin('/partners/leaving', { method: 'DELETE' })).status, 204);
  await assertRefused(await register(leaving.token, { ...APP, redirect_uris: ['https://leaving.example/cb'] }), 401, 'invalid_token');
});

test('initial_access_tokens_are_checked_when_the_operator_creates_them', async () => {
  for (const [body, field] of [
    [{ expires_in: 10 }, 'expires_in'],
    [{ max_registrations: 0 }, 'max_registrations'],
    [{ scopes: ['not a scope'] }, 'scopes[0]'],
    [{ grant_types: ['password'] }, 'grant_types[0]'],
  ]) {
    const res = await w.admin('/partners/acme/registration-tokens', { method: 'POST', body });
    const err = await res.json();
    assert.equal(res.status, 400);
    assert.equal(err.error, 'invalid_request');
    assert.equal(err.field, field);
    assert.equal(err.token, undefined);
  }
  assert.equal((await w.admin('/partners/nobody/registration-tokens', { method: 'POST', body: {} })).status, 404);
  const noAdmin = await w.fetch('/admin/partners/acme/registration-tokens', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
  assert.equal(noAdmin.status, 401);
});

test('an_initial_access_token_with_one_registration_left_registers_exactly_one_of_many_racing', async () => {
  const { token, id } = await initialToken('acme', { max_registrations: 1 });
  const before = (await clientsOf('acme')).length;
  const results = await Promise.all(Array.from({ length: 12 }, (_, i) => register(token, { ...APP, client_name: `Racer ${i}` })));
  const statuses = results.map((r) => r.status).sort();
  assert.deepEqual(statuses, [201, ...Array(11).fill(401)], `exactly one wins: ${statuses}`);
  for (const r of results.filter((r) => r.status === 401)) assert.equal((await r.json()).error, 'invalid_token');
  assert.equal((await clientsOf('acme')).length, before + 1);
  const listed = (await (await w.admin('/partners/acme/registration-tokens')).json()).registration_tokens.find((t) => t.id === id);
  assert.equal(listed.registrations, 1);
});

test('registration_access_token_reads_updates_with_rotation_and_deletes_only_its_own_client', async () => {
  const { token } = await initialToken('acme');
  const client = await (await register(token, { ...APP, client_name: 'Managed' })).json();
  const other = await (await register(token, { ...APP, client_name: 'Neighbour' })).json();
  const rat = client.registration_access_token;

  // Another client's token, a made-up one, none, or an unknown client: 401 invalid_token.
  await assertRefused(await manage(client, other.registration_access_token), 401, 'invalid_token');
  await assertRefused(await manage(client, 'made-up'), 401, 'invalid_token');
  const none = await w.fetch(new URL(client.registration_client_uri).pathname);
  assert.equal(none.status, 401);
  await assertRefused(await manage({ registration_client_uri: `${w.url}/oauth2/register/AAAAAAAAAAAAAAAAAAAAAA` }, rat), 401, 'invalid_token');
  // The admin token is not a registration access token.
  await assertRefused(await manage(client, w.adminToken), 401, 'invalid_token');

  const read = await manage(client, rat);
  assert.equal(read.status, 200);
  assert.equal((await read.json()).client_name, 'Managed');

  // An update names the client, may repeat its secret (which must then be its own), and stays
  // within the token's policy and the partner's origins.
  const full = { ...APP, client_name: 'Managed', client_id: client.client_id };
  await assertRefused(await manage(client, rat, { method: 'PUT', body: { ...full, client_id: other.client_id } }), 400, 'invalid_client_metadata');
  await assertRefused(await manage(client, rat, { method: 'PUT', body: { ...full, client_secret: other.client_secret } }), 400, 'invalid_client_metadata');
  await assertRefused(await manage(client, rat, { method: 'PUT', body: { ...full, redirect_uris: ['https://evil.example/cb'] } }), 400, 'invalid_redirect_uri');
  await assertRefused(await manage(client, rat, { method: 'PUT', body: { ...full, grant_types: ['client_credentials'] } }), 400, 'invalid_client_metadata');
  const put = await manage(client, rat, { method: 'PUT', body: { ...full, client_secret: client.client_secret, client_name: 'Renamed', redirect_uris: [REDIRECT, `${SITE}/second`] } });
  const updated = await put.json();
  assert.equal(put.status, 200, JSON.stringify(updated));
  assert.equal(updated.client_name, 'Renamed');
  assert.deepEqual(updated.redirect_uris, [REDIRECT, `${SITE}/second`]);
  assert.equal(updated.client_secret, undefined, 'the secret stays, and is not shown again');
  assert.notEqual(updated.registration_access_token, rat, 'rotated on update');
  // The old registration access token is dead; the new one works; the secret still works.
  await assertRefused(await manage(client, rat), 401, 'invalid_token');
  assert.equal((await manage(client, updated.registration_access_token)).status, 200);
  const cc = await w.fetch('/oauth2/token', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${client.client_id}:${client.client_secret}`).toString('base64')}` },
    body: 'grant_type=client_credentials',
  });
  assert.equal((await cc.json()).error, 'unauthorized_client', 'the secret authenticates; the grant is not registered');
  assert.equal((await (await w.admin(`/clients/${client.client_id}`)).json()).name, 'Renamed');

  // Delete: 204, then the client is gone for the token endpoint and for its token.
  const del = await manage(client, updated.registration_access_token, { method: 'DELETE' });
  assert.equal(del.status, 204);
  await assertRefused(await manage(client, updated.registration_access_token), 401, 'invalid_token');
  assert.equal((await w.admin(`/clients/${client.client_id}`)).status, 404);
  assert.equal((await manage(other, other.registration_access_token)).status, 200, 'its neighbour is untouched');
});

test('a_client_configuration_endpoint_hammered_with_guessed_tokens_is_rate_limited_per_network', async () => {
  const { token } = await initialToken('acme');
  const client = await (await register(token, APP)).json();
  const from = (ip) => ({ 'cf-connecting-ip': ip });
  const guess = (i, ip) => w.fetch(new URL(client.registration_client_uri).pathname, { headers: { authorization: `Bearer guess-${i}`, ...from(ip) } });
  const statuses = [];
  let limited;
  // Windows are a minute long: within two of them, one is used up whatever the start.
  for (let i = 0; i <= 2 * LIMIT && !limited; i++) {
    const res = await guess(i, '198.51.100.7');
    statuses.push(res.status);
    if (res.status === 429) limited = res;
  }
  assert.ok(statuses.slice(0, LIMIT / 2).every((s) => s === 401), 'guesses are refused as such');
  assert.ok(limited, `the limit ends the guessing: ${statuses.join(' ')}`);
  assert.equal((await limited.json()).error, 'rate_limited');
  assert.ok(Number(limited.headers.get('retry-after')) > 0);
  // The client itself, from its own network, is not locked out by someone guessing elsewhere.
  const own = await w.fetch(new URL(client.registration_client_uri).pathname, { headers: { authorization: `Bearer ${client.registration_access_token}`, ...from('203.0.113.9') } });
  assert.equal(own.status, 200);
  // An id no client has is refused without reaching the registry (nor its limit).
  for (let i = 0; i < LIMIT + 2; i++) {
    const res = await w.fetch(`/oauth2/register/${'B'.repeat(21)}${i % 10}`, { headers: { authorization: 'Bearer x', ...from('198.51.100.8') } });
    assert.equal(res.status, 401);
  }
});

test('operator_ends_a_clients_registration_access_and_the_client_stays', async () => {
  const { token } = await initialToken('acme');
  const client = await (await register(token, APP)).json();
  assert.equal((await w.admin(`/clients/${client.client_id}/registration`, { method: 'DELETE' })).status, 204);
  await assertRefused(await manage(client, client.registration_access_token), 401, 'invalid_token');
  await assertRefused(await manage(client, client.registration_access_token, { method: 'DELETE' }), 401, 'invalid_token');
  assert.equal((await w.admin(`/clients/${client.client_id}`)).status, 200, 'the client itself stays');
  assert.equal((await w.admin('/clients/AAAAAAAAAAAAAAAAAAAAAA/registration', { method: 'DELETE' })).status, 404);
});

/** The person's part of a code flow, from an authorization URL to the redirect back. */
async function signIn(jar, url) {
  let res = await jar.fetch(String(url));
  for (let hops = 0; hops < 8; hops++) {
    if (res.status === 302 || res.status === 303) {
      const loc = new URL(res.headers.get('location'), w.url);
      if (loc.origin === SITE) return loc;
      res = await jar.fetch(loc.href);
      continue;
    }
    const html = await res.text();
    assert.equal(res.status, 200, html.slice(0, 300));
    if (html.includes('name="password"')) res = await jar.postForm('/login', { ...formFields(html), username: 'ada', password: PASSWORD });
    else if (html.includes('name="decision"')) res = await jar.postForm('/oauth2/authorize', { ...formFields(html), decision: 'allow' });
    else throw new Error(`unexpected page: ${html.slice(0, 300)}`);
  }
  throw new Error('too many hops');
}

test('client_library_openid_client_5_registers_with_an_initial_access_token_and_signs_in', async () => {
  const { token } = await initialToken('acme', { grant_types: ['authorization_code', 'refresh_token'] });
  const issuer = await oc5.Issuer.discover(w.url);
  const app = await issuer.Client.register(
    { client_name: 'Library App', redirect_uris: [REDIRECT], grant_types: ['authorization_code', 'refresh_token'], scope: 'openid email offline_access' },
    { initialAccessToken: token },
  );
  assert.ok(app.client_id && app.client_secret);
  const verifier = oc5.generators.codeVerifier();
  const state = oc5.generators.state();
  const nonce = oc5.generators.nonce();
  const url = app.authorizationUrl({ scope: 'openid email offline_access', state, nonce, code_challenge: oc5.generators.codeChallenge(verifier), code_challenge_method: 'S256' });
  const callback = await signIn(new CookieJar(w.url), url);
  const tokenSet = await app.callback(REDIRECT, app.callbackParams(callback.href), { code_verifier: verifier, state, nonce });
  assert.equal(decodeJwt(tokenSet.id_token).header.alg, 'RS256');
  assert.equal(tokenSet.claims().aud, app.client_id);
  assert.equal((await app.userinfo(tokenSet.access_token)).email, 'ada@school.example');
  const refreshed = await app.refresh(tokenSet.refresh_token);
  assert.equal(refreshed.claims().sub, tokenSet.claims().sub);
  // The library reads its registration back with the registration access token.
  const again = await issuer.Client.fromUri(app.registration_client_uri, app.registration_access_token);
  assert.equal(again.client_id, app.client_id);
});

test('a_client_updated_to_fewer_scopes_gets_only_those_when_it_refreshes', async () => {
  const { token } = await initialToken('acme');
  const client = await (await register(token, { ...APP, grant_types: ['authorization_code', 'refresh_token'], scope: 'openid email offline_access' })).json();
  const { verifier, challenge } = pkce();
  const { callback } = await browserFlow(w, { client, username: 'ada', password: PASSWORD, scope: 'openid email offline_access', challenge, nonce: 'n-1' });
  const tokenCall = (fields) => w.fetch('/oauth2/token', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(client.client_id, client.client_secret) },
    body: new URLSearchParams(fields).toString(),
  });
  const first = await (await tokenCall({ grant_type: 'authorization_code', code: callback.searchParams.get('code'), redirect_uri: REDIRECT, code_verifier: verifier })).json();
  assert.equal(first.scope, 'openid email offline_access', JSON.stringify(first));
  const put = await manage(client, client.registration_access_token, {
    method: 'PUT',
    body: { ...APP, client_id: client.client_id, grant_types: ['authorization_code', 'refresh_token'], scope: 'openid offline_access' },
  });
  assert.equal(put.status, 200);
  const refreshed = await (await tokenCall({ grant_type: 'refresh_token', refresh_token: first.refresh_token })).json();
  assert.equal(refreshed.scope, 'openid offline_access', JSON.stringify(refreshed));
  const info = await (await w.fetch('/oauth2/userinfo', { headers: { authorization: `Bearer ${refreshed.access_token}` } })).json();
  assert.equal(info.email, undefined, 'the scope the client lost releases nothing');
  assert.ok(info.sub);
});

test('a_client_registered_under_a_pkce_token_is_refused_a_code_without_pkce', async () => {
  const { token } = await initialToken('acme');
  const client = await (await register(token, APP)).json();
  const jar = new CookieJar(w.url);
  const { challenge } = pkce();
  assert.ok(challenge);
  const res = await jar.fetch(`/oauth2/authorize?${new URLSearchParams({ response_type: 'code', client_id: client.client_id, redirect_uri: REDIRECT, scope: 'openid', state: randomUUID(), nonce: 'n-1' })}`);
  assert.equal(res.status, 302);
  const loc = new URL(res.headers.get('location'));
  assert.equal(loc.origin + loc.pathname, REDIRECT);
  assert.equal(loc.searchParams.get('error'), 'invalid_request');
  assert.equal(loc.searchParams.get('code'), null);
});
