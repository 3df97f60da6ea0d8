// JWTs and values from outside, at every place that takes them: a `crit` header we do not
// understand is refused wherever a JWT is verified (RFC 7515 §4.1.11), and values too long to be
// a storage key (an `iss`, a `client_id`, a `kid`...) are the endpoint's usual 4xx, never a 5xx.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { startWorker } from './harness.mjs';
import { CookieJar, basicAuth, browserFlow, decodeJwt, formFields, linkAndConfirm, pkce } from './oauth.mjs';
import { LINK_REQUEST_TYP, LOGIN_ASSERTION_TYP, generateJwk, publicJwk, signJwt } from '../../scripts/lib/jwk.mjs';

const PASSWORD = 'correct horse battery staple';
const ORIGIN = 'https://app.acme.example';
const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const partnerKey = generateJwk('EdDSA');
const clientKey = generateJwk('EdDSA');
const LONG = [600, 5000];

let w;
let web; // code-flow client: access and ID tokens of ours
let pkj; // private_key_jwt client
let svc; // jwt-bearer client
let tokens; // of web, for lena

before(async () => {
  w = await startWorker();
  const put = await w.admin('/partners/acme', {
    method: 'PUT',
    body: { name: 'Acme Learning', origins: [ORIGIN], jwks: { keys: [publicJwk(partnerKey)] } },
  });
  assert.equal(put.status, 201);
  const client = async (body) => {
    const res = await w.admin('/partners/acme/clients', { method: 'POST', body });
    assert.equal(res.status, 201);
    return res.json();
  };
  web = await client({ name: 'Web', redirect_uris: [`${ORIGIN}/cb`], post_logout_redirect_uris: [`${ORIGIN}/cb`], scopes: ['openid', 'profile'] });
  pkj = await client({
    name: 'Server', grant_types: ['client_credentials'], scopes: ['classes.read'],
    token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [publicJwk(clientKey)] },
  });
  svc = await client({ name: 'Bearer', grant_types: [JWT_BEARER], scopes: ['openid'] });
  await w.admin('/users/lena', { method: 'PUT', body: { password: PASSWORD, name: 'Lena' } });

  const jar = new CookieJar(w.url);
  const { verifier, challenge } = pkce();
  const { callback } = await browserFlow(w, { client: web, username: 'lena', password: PASSWORD, challenge, scope: 'openid profile', jar });
  const res = await post('/oauth2/token', {
    grant_type: 'authorization_code', code: callback.searchParams.get('code'), redirect_uri: web.redirect_uris[0], code_verifier: verifier,
  }, basicAuth(web.client_id, web.client_secret));
  assert.equal(res.status, 200);
  tokens = await res.json();
  // lena links her acme account (acme-lena), for automatic login and the jwt-bearer grant.
  const { page, agreed, confirmed } = await linkAndConfirm(jar, partnerKey, linkRequest({ sub: 'acme-lena' }));
  assert.equal(page.status, 200);
  assert.equal(agreed.status, 303);
  assert.equal(confirmed.status, 200);
});
after(() => w?.stop());

function post(path, fields, authorization) {
  return fetch(`${w.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...(authorization ? { authorization } : {}) },
    body: new URLSearchParams(fields).toString(),
  });
}

const now = () => Math.floor(Date.now() / 1000);
const long = (n) => `https://${'a'.repeat(n - 8)}`;

function linkRequest(claims = {}, header = {}) {
  return signJwt(partnerKey, { alg: 'EdDSA', kid: partnerKey.kid, typ: LINK_REQUEST_TYP, ...header }, {
    iss: ORIGIN, aud: w.url, sub: `acme-${randomUUID()}`, jti: randomUUID(), iat: now(), exp: now() + 240,
    return_to: `${ORIGIN}/linked`, account_label: 'acme account', state: 'st', ...claims,
  });
}

function loginAssertion(claims = {}, header = {}, { aud = w.url, typ = LOGIN_ASSERTION_TYP } = {}) {
  return signJwt(partnerKey, { alg: 'EdDSA', kid: partnerKey.kid, typ, ...header }, {
    iss: ORIGIN, aud, sub: 'acme-lena', jti: randomUUID(), iat: now(), exp: now() + 60, ...claims,
  });
}

const grantAssertion = (claims, header) => loginAssertion(claims, header, { aud: `${w.url}/oauth2/token`, typ: 'JWT' });

function clientAssertion(claims = {}, header = {}) {
  const id = pkj.client_id;
  return signJwt(clientKey, { alg: 'EdDSA', kid: clientKey.kid, typ: 'JWT', ...header }, {
    iss: id, sub: id, aud: `${w.url}/oauth2/token`, jti: randomUUID(), iat: now(), exp: now() + 120, ...claims,
  });
}

async function linkPage(request) {
  const jar = new CookieJar(w.url);
  const form = await jar.fetch(`/login?return_to=${encodeURIComponent('/account')}`);
  assert.equal((await jar.postForm('/login', { ...formFields(await form.text()), username: 'lena', password: PASSWORD })).status, 303);
  return jar.fetch(`/link?request=${encodeURIComponent(request)}`);
}

// As the partner's page posts it (from its own origin: a valid one signs in at once).
const autoLogin = (assertion) => fetch(`${w.url}/login/auto`, {
  method: 'POST',
  redirect: 'manual',
  headers: { 'content-type': 'application/x-www-form-urlencoded', origin: ORIGIN },
  body: new URLSearchParams({ assertion, return_to: '/account' }).toString(),
});
const jwtBearer = (assertion) => post('/oauth2/token', { grant_type: JWT_BEARER, assertion }, basicAuth(svc.client_id, svc.client_secret));
const clientCredentials = (assertion, extra = {}) => post('/oauth2/token', {
  grant_type: 'client_credentials',
  client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
  client_assertion: assertion,
  ...extra,
});

async function assertPage(res, status, what) {
  assert.equal(res.status, status, what);
  assert.equal(res.headers.get('location'), null, `${what}: never redirected`);
  assert.equal(res.headers.get('set-cookie'), null, `${what}: no session`);
  assert.match(res.headers.get('content-type'), /text\/html/, what);
  return res.text();
}

async function assertJsonError(res, status, error, what) {
  assert.equal(res.status, status, what);
  const body = await res.json();
  assert.equal(body.error, error, what);
  assert.equal(body.access_token, undefined, what);
  return body;
}

/** `token` re-signed by the Worker's own key that signed it (the harness knows them) with `extra` in the header. */
function ourTokenWithHeader(token, extra) {
  const { header, payload } = decodeJwt(token);
  const key = w.signingKeys.keys.find((k) => k.kid === header.kid);
  return signJwt(key, { ...header, ...extra }, payload);
}

const CRITS = { 'crit naming a claim': { crit: ['exp'], exp: 1 }, 'crit naming an extension': { crit: ['b64'], b64: false }, 'crit malformed': { crit: 'exp' }, 'crit empty': { crit: [] } };

test('our_access_tokens_with_a_crit_header_are_refused_at_the_gateway_userinfo_and_introspection', async () => {
  const control = ourTokenWithHeader(tokens.access_token, {});
  const whoami = (t) => fetch(`${w.url}/edge/whoami`, { headers: { authorization: `Bearer ${t}` } });
  assert.equal((await whoami(control)).status, 200, 'the same token without crit passes');
  for (const [what, extra] of Object.entries(CRITS)) {
    const t = ourTokenWithHeader(tokens.access_token, extra);
    await assertJsonError(await whoami(t), 401, 'invalid_token', `gateway: ${what}`);
    const info = await fetch(`${w.url}/oauth2/userinfo`, { headers: { authorization: `Bearer ${t}` } });
    const body = await assertJsonError(info, 401, 'invalid_token', `userinfo: ${what}`);
    assert.equal(body.sub, undefined);
    const intro = await post('/oauth2/introspect', { token: t }, basicAuth(web.client_id, web.client_secret));
    assert.deepEqual(await intro.json(), { active: false }, `introspection: ${what}`);
  }
});

test('client_assertions_with_a_crit_header_are_refused', async () => {
  assert.equal((await clientCredentials(clientAssertion())).status, 200, 'the same assertion without crit passes');
  for (const [what, extra] of Object.entries(CRITS)) {
    const body = await assertJsonError(await clientCredentials(clientAssertion({}, extra)), 401, 'invalid_client', what);
    assert.match(body.error_description ?? '', /crit|well-formed/, what);
  }
});

test('partner_jwts_with_a_crit_header_are_refused', async () => {
  assert.equal((await linkPage(linkRequest())).status, 200, 'a link request without crit passes');
  assert.equal((await autoLogin(loginAssertion())).status, 303, 'a login assertion without crit passes');
  assert.equal((await jwtBearer(grantAssertion())).status, 200, 'a grant assertion without crit passes');
  for (const [what, extra] of Object.entries(CRITS)) {
    await assertPage(await linkPage(linkRequest({}, extra)), 403, `link request: ${what}`);
    await assertPage(await autoLogin(loginAssertion({}, extra)), 403, `login assertion: ${what}`);
    await assertJsonError(await jwtBearer(grantAssertion({}, extra)), 400, 'invalid_grant', `jwt-bearer: ${what}`);
  }
});

test('logout_id_token_hint_with_a_crit_header_is_not_trusted', async () => {
  const bye = async (hint) => {
    const jar = new CookieJar(w.url);
    await browserFlow(w, { client: web, username: 'lena', password: PASSWORD, challenge: pkce().challenge, scope: 'openid profile', jar });
    return jar.fetch(`/oauth2/logout?${new URLSearchParams({ id_token_hint: hint, post_logout_redirect_uri: `${ORIGIN}/cb` })}`);
  };
  // A trusted hint with a registered logout URI logs out at once.
  const control = await bye(ourTokenWithHeader(tokens.id_token, {}));
  assert.equal(control.status, 302, 'the same hint without crit is trusted');
  for (const [what, extra] of Object.entries(CRITS)) {
    const res = await bye(ourTokenWithHeader(tokens.id_token, extra));
    assert.equal(res.status, 200, `${what}: the user is asked first`);
    assert.equal(res.headers.get('location'), null, `${what}: no redirect`);
  }
});

test('overlong_iss_in_partner_jwts_is_the_usual_refusal_never_a_5xx', async () => {
  for (const n of LONG) {
    const iss = long(n);
    const link = await assertPage(await linkPage(linkRequest({ iss })), 403, `link request, iss of ${n} bytes`);
    assert.match(link, /unknown partner/, `link request, iss of ${n} bytes`);
    const auto = await assertPage(await autoLogin(loginAssertion({ iss })), 403, `login assertion, iss of ${n} bytes`);
    assert.match(auto, /unknown partner/, `login assertion, iss of ${n} bytes`);
    await assertJsonError(await jwtBearer(grantAssertion({ iss })), 400, 'invalid_grant', `jwt-bearer, iss of ${n} bytes`);
  }
});

test('overlong_kid_jti_and_sub_in_partner_jwts_are_the_usual_refusal_never_a_5xx', async () => {
  for (const n of LONG) {
    const big = 'k'.repeat(n);
    await assertPage(await linkPage(linkRequest({}, { kid: big })), 403, `link request, kid of ${n} bytes`);
    await assertPage(await linkPage(linkRequest({ sub: big })), 403, `link request, sub of ${n} bytes`);
    await assertPage(await autoLogin(loginAssertion({}, { kid: big })), 403, `login assertion, kid of ${n} bytes`);
    await assertPage(await autoLogin(loginAssertion({ sub: big })), 403, `login assertion, sub of ${n} bytes`);
    await assertJsonError(await jwtBearer(grantAssertion({ sub: big })), 400, 'invalid_grant', `jwt-bearer, sub of ${n} bytes`);
  }
  // jti is bounded (256 bytes) before it is hashed and claimed.
  for (const n of LONG) {
    const big = 'j'.repeat(n);
    await assertPage(await linkPage(linkRequest({ jti: big })), 403, `link request, jti of ${n} bytes`);
    await assertPage(await autoLogin(loginAssertion({ jti: big })), 403, `login assertion, jti of ${n} bytes`);
    await assertJsonError(await jwtBearer(grantAssertion({ jti: big })), 400, 'invalid_grant', `jwt-bearer, jti of ${n} bytes`);
    await assertJsonError(await clientCredentials(clientAssertion({ jti: big })), 401, 'invalid_client', `client assertion, jti of ${n} bytes`);
  }
});

test('overlong_client_id_iss_sub_and_kid_in_client_authentication_are_401_never_a_5xx', async () => {
  for (const n of LONG) {
    const big = 'c'.repeat(n);
    const cases = {
      'assertion iss': clientCredentials(clientAssertion({ iss: long(n) })),
      'assertion kid': clientCredentials(clientAssertion({}, { kid: big })),
      'assertion sub, no client_id': clientCredentials(clientAssertion({ sub: big })),
      'client_id beside the assertion': clientCredentials(clientAssertion(), { client_id: big }),
      'basic client_id': post('/oauth2/token', { grant_type: 'client_credentials' }, basicAuth(big, 'secret')),
      'form client_id': post('/oauth2/token', { grant_type: 'client_credentials', client_id: big, client_secret: 'secret' }),
      'introspection caller': post('/oauth2/introspect', { token: tokens.access_token }, basicAuth(big, 'secret')),
      'revocation caller': post('/oauth2/revoke', { token: tokens.access_token }, basicAuth(big, 'secret')),
    };
    for (const [what, res] of Object.entries(cases)) {
      await assertJsonError(await res, 401, 'invalid_client', `${what} of ${n} bytes`);
    }
  }
});

test('overlong_values_at_browser_endpoints_are_the_usual_refusal_never_a_5xx', async () => {
  for (const n of LONG) {
    const big = 'u'.repeat(n);
    // Sign-in: the same answer as a wrong password.
    const jar = new CookieJar(w.url);
    const form = await jar.fetch(`/login?return_to=${encodeURIComponent('/account')}`);
    const login = await jar.postForm('/login', { ...formFields(await form.text()), username: big, password: PASSWORD });
    assert.equal(login.status, 401, `username of ${n} bytes`);
    // The authorize endpoint: an error page, never a redirect.
    const auth = await fetch(`${w.url}/oauth2/authorize?${new URLSearchParams({
      response_type: 'code', client_id: big, redirect_uri: `${ORIGIN}/cb`, scope: 'openid', code_challenge: pkce().challenge, code_challenge_method: 'S256',
    })}`, { redirect: 'manual' });
    assert.equal(auth.status, 400, `authorize client_id of ${n} bytes`);
    assert.equal(auth.headers.get('location'), null);
    // The gateway: an Origin that long is no partner's.
    const gate = await fetch(`${w.url}/edge/whoami`, { headers: { origin: long(n), authorization: `Bearer ${tokens.access_token}` } });
    await assertJsonError(gate, 403, 'origin_not_allowed', `Origin of ${n} bytes`);
  }
});

test('overlong_partner_issuer_is_400_at_the_admin_api', async () => {
  for (const n of LONG) {
    const res = await w.admin('/partners/longiss', { method: 'PUT', body: { name: 'Long', origins: ['https://long.example'], issuer: long(n) } });
    assert.equal(res.status, 400, `issuer of ${n} bytes`);
    const body = await res.json();
    assert.equal(body.error, 'invalid_request');
    assert.equal(body.field, 'issuer');
  }
  assert.equal((await w.admin('/partners/longiss')).status, 404, 'nothing was written');
});
