// The OpenID Foundation's Dynamic OP test plan (oidcc-dynamic-certification-test-plan: discovery,
// dynamically registered clients authenticating with private_key_jwt), module by module, each
// test named after the module (`dynamic_…`) and checking what the module checks. Each module
// registers its own client as the suite does (OIDCCCreateDynamicClientRegistrationRequest: one
// RSA key without `kid`, private_key_jwt, the code response type), with the operator's initial
// access token (the suite's `client.initial_access_token`). The modules not mirrored yet, and the
// two requirements we cannot offer, are listed in docs/conformance.md.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker, startOrigin, addPartner, sleep } from './harness.mjs';
import { decodeJwt, verifyJwt } from './oauth.mjs';
import { SuiteRp, randomValue } from './conformance.mjs';
import { createHash } from 'node:crypto';
import { generateJwk, publicJwk, signJwt, thumbprint } from '../../scripts/lib/jwk.mjs';

const PASSWORD = 'conformance suite password';
const BASE = 'https://suite.example/test/a/edgeward';
const CALLBACK = `${BASE}/callback`;
let w;
let iat;
/** The suite's own host, where it serves a client's keys (`{base}/client1_jwks`). */
let host;
let servedJwks = { keys: [] };
/** Other documents the suite serves, by path. */
const served = new Map();

before(async () => {
  w = await startWorker();
  host = await startOrigin({
    respond: (req, res) => {
      const doc = served.get(req.url) ?? servedJwks;
      // A request object is served as a JWT, everything else as JSON.
      res.writeHead(200, { 'content-type': typeof doc === 'string' ? 'application/jwt' : 'application/json' });
      res.end(typeof doc === 'string' ? doc : JSON.stringify(doc));
    },
  });
  await addPartner(w, 'suite', ['https://suite.example', host.url]);
  const res = await w.admin('/partners/suite/registration-tokens', {
    method: 'POST',
    body: { label: 'OpenID conformance suite', grant_types: ['authorization_code', 'refresh_token'], scopes: ['openid', 'profile', 'email', 'offline_access'], require_pkce: false },
  });
  assert.equal(res.status, 201);
  iat = (await res.json()).token;
  await w.admin('/users/buffy', { method: 'PUT', body: { password: PASSWORD, name: 'Buffy Summers', email: 'buffy@suite.example', email_verified: true } });
});
after(async () => {
  await host?.stop();
  await w?.stop();
});

function callRegistration(metadata) {
  return w.fetch('/oauth2/register', {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json', authorization: `Bearer ${iat}` },
    body: JSON.stringify(metadata),
  });
}

/**
 * The suite's registration request with `extra`, sent and checked as
 * CallDynamicRegistrationEndpointAndVerifySuccessfulResponse does. Answers the client with its
 * private key (`privateJwk`) and `auth: 'private_key_jwt'` for SuiteRp.
 */
async function registerClient(extra = {}) {
  const key = generateJwk('RS256');
  delete key.kid;
  const pub = publicJwk(key);
  delete pub.kid;
  const res = await callRegistration({
    client_name: `OIDF Conformance Test ${randomValue()}`,
    grant_types: ['authorization_code'],
    jwks: { keys: [pub] },
    token_endpoint_auth_method: 'private_key_jwt',
    response_types: ['code'],
    redirect_uris: [CALLBACK],
    contacts: ['certification@oidf.org'],
    ...extra,
  });
  assert.match(res.headers.get('content-type'), /^application\/json/, 'EnsureContentTypeJson');
  const client = await res.json();
  assert.equal(res.status, 201, `EnsureHttpStatusCodeIs201: ${JSON.stringify(client)}`);
  assert.equal(client.error, undefined, 'CheckNoErrorFromDynamicRegistrationEndpoint');
  assert.ok(client.client_id, 'ExtractDynamicRegistrationResponse');
  assert.ok(client.registration_client_uri && client.registration_access_token, 'VerifyClientManagementCredentials');
  if (client.client_secret) assert.notEqual(client.client_secret_expires_at, undefined, 'VerifyDynamicRegistrationResponseClientCredentials');
  return { ...client, privateJwk: key, auth: 'private_key_jwt' };
}

/** UnregisterDynamicallyRegisteredClient: DELETE with the registration access token, 204. */
async function unregister(client) {
  const res = await w.fetch(new URL(client.registration_client_uri).pathname, { method: 'DELETE', headers: { authorization: `Bearer ${client.registration_access_token}` } });
  assert.equal(res.status, 204, 'UnregisterDynamicallyRegisteredClient');
}

const rpFor = (client, redirectUri = client.redirect_uris[0]) =>
  new SuiteRp(w, { client: { ...client, redirect_uris: [redirectUri] }, username: 'buffy', password: PASSWORD }).configure();

/** The private_key_jwt checks every flow module of the plan makes of discovery. */
function privateKeyJwtSupported(rp) {
  assert.ok(rp.meta.token_endpoint_auth_methods_supported.includes('private_key_jwt'), 'EnsureServerConfigurationSupportsPrivateKeyJwt');
  assert.ok(rp.meta.registration_endpoint, 'CallDynamicRegistrationEndpoint: registration_endpoint');
}

test('dynamic_oidcc-server', async () => {
  const client = await registerClient();
  assert.equal(client.client_secret, undefined, 'no secret for private_key_jwt');
  const rp = await rpFor(client);
  privateKeyJwtSupported(rp);
  const { code, claims, tokens } = await rp.happyFlow();
  assert.ok(code.length >= 16, 'EnsureMinimumAuthorizationCodeLength');
  assert.equal(decodeJwt(tokens.id_token).header.alg, 'RS256', 'RS256 when the client registered none');
  assert.equal(claims.aud, client.client_id);
  await unregister(client);
});

test('dynamic_oidcc-idtoken-rs256', async () => {
  const client = await registerClient({ id_token_signed_response_alg: 'RS256' });
  const rp = await rpFor(client);
  const sent = rp.request();
  const code = rp.checkCallback(await rp.authorize(sent), sent);
  const { tokens } = await rp.exchange(code, sent);
  const { header } = decodeJwt(tokens.id_token);
  assert.ok(header.kid, 'EnsureIdTokenContainsKid');
  assert.equal(header.alg, 'RS256', 'CheckIdTokenSignatureAlgorithm: the registered algorithm');
  await unregister(client);
});

test('dynamic_oidcc-idtoken-unsigned', async () => {
  // The suite skips the module unless discovery offers `none`; we never sign with `none`, and a
  // registration asking for it is refused rather than given signed tokens it did not ask for.
  const rp = await new SuiteRp(w, { client: { client_id: 'x', redirect_uris: [CALLBACK] } }).configure();
  assert.ok(!rp.meta.id_token_signing_alg_values_supported.includes('none'), 'skipped by the suite: none is not offered');
  const res = await callRegistration({ client_name: 'Unsigned', redirect_uris: [CALLBACK], id_token_signed_response_alg: 'none' });
  assert.equal(res.status, 400);
  assert.equal((await res.json()).error, 'invalid_client_metadata');
});

test('dynamic_oidcc-userinfo-rs256', async () => {
  const client = await registerClient({ userinfo_signed_response_alg: 'RS256' });
  assert.equal(client.userinfo_signed_response_alg, 'RS256');
  const rp = await rpFor(client);
  assert.ok(rp.meta.userinfo_signing_alg_values_supported.includes('RS256'), 'CheckDiscEndpointUserinfoSigningAlgValuesSupportedContainsRS256');
  const sent = rp.request();
  const code = rp.checkCallback(await rp.authorize(sent), sent);
  const { tokens, claims } = await rp.exchange(code, sent);
  // Called with Accept: application/json, as the suite does; answered as a JWT all the same.
  const res = await w.fetch('/oauth2/userinfo', { headers: { accept: 'application/json', authorization: `Bearer ${tokens.access_token}` } });
  assert.equal(res.status, 200, 'EnsureHttpStatusCodeIs200');
  assert.match(res.headers.get('content-type'), /^application\/jwt/, 'EnsureContentTypeApplicationJwt');
  assert.equal(res.headers.get('cache-control'), 'no-store');
  const jwt = await res.text();
  const info = verifyJwt(jwt, rp.jwks); // ValidateUserInfoResponseSignature
  assert.equal(decodeJwt(jwt).header.alg, 'RS256', 'ValidateUserInfoSigningAlgIsRS256');
  const now = Math.floor(Date.now() / 1000);
  assert.equal(info.iss, rp.meta.issuer, 'ValidateSignedUserInfoResponseStandardJWTClaims: iss');
  assert.ok(info.aud === client.client_id || info.aud?.includes?.(client.client_id), 'ValidateSignedUserInfoResponseStandardJWTClaims: aud');
  assert.ok(info.exp > now && info.exp < now + 50 * 365 * 86400, 'ValidateSignedUserInfoResponseStandardJWTClaims: exp');
  assert.ok(info.iat <= now + 5 && info.iat > now - 86400, 'ValidateSignedUserInfoResponseStandardJWTClaims: iat');
  assert.equal(info.nonce, undefined, 'EnsureUserInfoDoesNotContainNonce');
  assert.equal(info.sub, claims.sub, 'VerifyUserInfoAndIdTokenInTokenEndpointSameSub');
  await unregister(client);
});

test('dynamic_oidcc-ensure-redirect-uri-in-authorization-request', async () => {
  const client = await registerClient({ redirect_uris: [CALLBACK, 'https://suite.example/redirect'] });
  const rp = await rpFor(client);
  const { redirect_uri, ...sent } = rp.request();
  const shown = await rp.authorize(sent);
  assert.ok(shown.page && shown.status >= 400, 'an error page; a redirect back is AuthorizationEndpointRedirectedBackUnexpectedly');
  await unregister(client);
});

test('dynamic_oidcc-redirect-uri-query-OK', async () => {
  const withQuery = `${CALLBACK}?bar=foo`;
  const client = await registerClient({ redirect_uris: [withQuery] });
  const rp = await rpFor(client, withQuery);
  const sent = rp.request();
  const cb = await rp.authorize(sent);
  rp.checkCallback(cb, sent);
  assert.equal(cb.params.bar, 'foo', 'CheckMatchingCallbackParameters');
  await unregister(client);
});

for (const [module, registered, used] of [
  ['oidcc-redirect-uri-query-mismatch', `${CALLBACK}?bar=foo`, `${CALLBACK}?foo=bar`],
  ['oidcc-redirect-uri-query-added', CALLBACK, `${CALLBACK}?foo=bar`],
]) {
  test(`dynamic_${module}`, async () => {
    const client = await registerClient({ redirect_uris: [registered] });
    const rp = await rpFor(client, used);
    const shown = await rp.authorize(rp.request());
    assert.ok(shown.page && shown.status >= 400, 'an error page: any callback fails the test');
    assert.match(shown.page, /redirect_uri is not registered/);
    await unregister(client);
  });
}

test('dynamic_oidcc-redirect-uri-regfrag', async () => {
  const res = await callRegistration({ client_name: 'Fragment', redirect_uris: [`${CALLBACK}#foobar`], response_types: ['code'] });
  assert.match(res.headers.get('content-type'), /^application\/json/, 'EnsureContentTypeJson');
  assert.equal(res.status, 400, 'EnsureHttpStatusCodeIs400');
  assert.ok(['invalid_redirect_uri', 'invalid_client_metadata'].includes((await res.json()).error), 'CheckErrorFromDynamicRegistrationEndpointIsInvalidRedirectUriOrInvalidClientMetadata');
});

/** An RS256 key whose kid is its thumbprint, as the suite's jwks_uri variants make them. */
function keyWithKid() {
  const key = generateJwk('RS256');
  key.kid = thumbprint(key);
  return key;
}

test('dynamic_oidcc-registration-jwks-uri', async () => {
  const key = keyWithKid();
  servedJwks = { keys: [publicJwk(key)] };
  const client = await registerClient({ jwks: undefined, jwks_uri: `${host.url}/client1_jwks` });
  assert.equal(client.jwks_uri, `${host.url}/client1_jwks`);
  const rp = await rpFor({ ...client, privateJwk: key });
  await rp.happyFlow();
  assert.ok(host.received.some((r) => r.url === '/client1_jwks'), 'the keys were fetched from the jwks_uri');
  await unregister(client);
});

test('dynamic_oidcc-refresh-token-rp-key-rotation', async () => {
  const oldKey = keyWithKid();
  servedJwks = { keys: [publicJwk(oldKey)] };
  // A path of its own: a document is cached per URI, fetched again for an unknown kid at most
  // every 30 s, and the module before fetched its own.
  const client = await registerClient({ jwks: undefined, jwks_uri: `${host.url}/rotation/client1_jwks`, grant_types: ['authorization_code', 'refresh_token'] });
  const rp = await rpFor({ ...client, privateJwk: oldKey });
  const first = await rp.happyFlow({ scope: 'openid offline_access', prompt: 'consent' });
  const rt = first.tokens.refresh_token;
  assert.ok(rt, 'ExtractRefreshTokenFromTokenResponse');
  assert.match(rt, /^[\x20-\x7E]+$/, 'EnsureRefreshTokenContainsAllowedCharactersOnly');
  // The RP rotates its key (a new kid at the same jwks_uri) and waits WaitForJWKSRefreshDelay
  // (the suite's server.jwks_refresh_delay; we fetch again on an unknown kid after 30 s).
  const newKey = keyWithKid();
  servedJwks = { keys: [publicJwk(newKey)] };
  await sleep(31_000);
  const res = await rp.tokenRequest({ grant_type: 'refresh_token', refresh_token: rt }, { client: { ...client, privateJwk: newKey, auth: 'private_key_jwt' } });
  const refreshed = await res.json();
  assert.equal(res.status, 200, `CheckTokenEndpointHttpStatus200: ${JSON.stringify(refreshed)}`);
  assert.ok(refreshed.access_token);
  // The old key is gone from the document: an assertion signed with it is refused.
  const stale = await rp.tokenRequest({ grant_type: 'refresh_token', refresh_token: refreshed.refresh_token }, { client: { ...client, privateJwk: oldKey, auth: 'private_key_jwt' } });
  assert.equal(stale.status, 401);
  assert.equal((await stale.json()).error, 'invalid_client');
  await unregister(client);
});

/** The login page a person sees for `client`, with cookies removed first (a fresh jar). */
async function loginPage(client) {
  const rp = await rpFor(client);
  const shown = await rp.authorize(rp.request(), { stopAtLogin: true });
  assert.ok(shown.sawLogin, 'the login page (the suite asks to remove cookies first)');
  return shown.page;
}

for (const [module, field, uri, shows] of [
  ['oidcc-registration-logo-uri', 'logo_uri', () => `${host.url}/images/openid.png`, (page, u) => page.includes(`<img src="${u}"`)],
  ['oidcc-registration-policy-uri', 'policy_uri', () => `${host.url}/login.html`, (page, u) => page.includes(`<a href="${u}"`) && page.includes('privacy policy')],
  ['oidcc-registration-tos-uri', 'tos_uri', () => 'https://openid.net/', (page, u) => page.includes(`<a href="${u}"`) && page.includes('terms of service')],
]) {
  test(`dynamic_${module}`, async () => {
    const client = await registerClient({ [field]: uri() });
    assert.equal(client[field], uri());
    const page = await loginPage(client);
    assert.ok(shows(page, uri()), `the login page shows the ${field} (the suite's screenshot placeholder)`);
    await unregister(client);
  });
}

test('dynamic_oidcc-registration-sector-uri', async () => {
  served.set('/redirect_uris.json', [CALLBACK, 'https://suite.example/other']);
  const rp = await new SuiteRp(w, { client: { client_id: 'x', redirect_uris: [CALLBACK] } }).configure();
  assert.ok(rp.meta.subject_types_supported.includes('pairwise'), 'not skipped: pairwise is offered');
  const client = await registerClient({ subject_type: 'pairwise', sector_identifier_uri: `${host.url}/redirect_uris.json` });
  assert.equal(client.subject_type, 'pairwise');
  assert.ok(host.received.some((r) => r.url === '/redirect_uris.json'), 'the sector document was fetched');
  await unregister(client);
});

test('dynamic_oidcc-registration-sector-bad', async () => {
  served.set('/bad_redirect_uris.json', ['https://example.com/op']);
  const res = await callRegistration({
    client_name: 'Sector', redirect_uris: [CALLBACK], response_types: ['code'], subject_type: 'pairwise',
    sector_identifier_uri: `${host.url}/bad_redirect_uris.json`,
  });
  assert.match(res.headers.get('content-type'), /^application\/json/, 'EnsureContentTypeJson');
  assert.equal(res.status, 400, 'EnsureHttpStatusCodeIs400');
  const body = await res.json();
  assert.equal(body.error, 'invalid_client_metadata', 'CheckErrorFromDynamicRegistrationEndpointIsInvalidClientMetadata');
  assert.equal(body.client_id, undefined);
  // Nor a sector document off the partner's origins, which we would not fetch.
  const off = await callRegistration({ client_name: 'Sector', redirect_uris: [CALLBACK], sector_identifier_uri: 'https://elsewhere.example/uris.json' });
  assert.equal(off.status, 400);
  assert.equal((await off.json()).error, 'invalid_client_metadata');
});

/**
 * The request_uri modules (AbstractOIDCCRequestUriServerTest): a registered
 * `{base}/requesturi/<64 alnum>#<sha256>`, serving the whole request as a JWT; the query has only
 * response_type, client_id, scope, redirect_uri and the request_uri (fragment included).
 */
async function requestUriFlow({ signed }) {
  const path = `/requesturi/${randomValue(64)}`;
  const requestUri = `${host.url}${path}#${createHash('sha256').update(path).digest('base64url')}`;
  const client = await registerClient({ request_uris: [requestUri], ...(signed ? { request_object_signing_alg: 'RS256' } : {}) });
  assert.deepEqual(client.request_uris, [requestUri]);
  const rp = await rpFor(client);
  assert.notEqual(rp.meta.request_uri_parameter_supported, false, 'CheckDiscEndpointRequestUriParameterSupported');
  if (signed) assert.ok(rp.meta.request_object_signing_alg_values_supported.includes('RS256'), 'CheckDiscEndpointRequestObjectSigningAlgValuesSupportedContainsRS256');
  else assert.ok(rp.meta.request_object_signing_alg_values_supported.includes('none'), 'not skipped: none is offered');
  const inner = rp.request();
  const now = Math.floor(Date.now() / 1000);
  const enc = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  served.set(path, signed
    ? signJwt(client.privateJwk, { alg: 'RS256', typ: 'oauth-authz-req+jwt' }, { ...inner, iss: client.client_id, aud: rp.meta.issuer, iat: now, exp: now + 300 })
    : `${enc({ alg: 'none' })}.${enc(inner)}.`);
  const sent = { response_type: 'code', client_id: client.client_id, scope: inner.scope, redirect_uri: inner.redirect_uri, request_uri: requestUri };
  const cb = await rp.authorize(sent);
  const code = rp.checkCallback(cb, inner);
  const { claims } = await rp.exchange(code, inner);
  assert.equal(claims.nonce, inner.nonce);
  assert.ok(host.received.some((r) => r.url === path), 'the request object was fetched from the request_uri');
  return { client, rp, inner, path, requestUri, sent };
}

test('dynamic_oidcc-request-uri-unsigned', async () => {
  const { client } = await requestUriFlow({ signed: false });
  await unregister(client);
});

test('dynamic_oidcc-request-uri-signed-rs256', async () => {
  const { client, rp, inner, path, sent } = await requestUriFlow({ signed: true });
  // Signed by another key, unsigned although RS256 was registered, or not for us: refused on a
  // page, never sent to the redirect URI the object names.
  const now = Math.floor(Date.now() / 1000);
  const enc = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  for (const bad of [
    signJwt(generateJwk('RS256'), { alg: 'RS256' }, { ...inner, iss: client.client_id, aud: rp.meta.issuer, exp: now + 300 }),
    `${enc({ alg: 'none' })}.${enc(inner)}.`,
    signJwt(client.privateJwk, { alg: 'RS256' }, { ...inner, iss: client.client_id, aud: 'https://elsewhere.example', exp: now + 300 }),
    // No exp, or what a client assertion looks like (a sub): never a request object.
    signJwt(client.privateJwk, { alg: 'RS256' }, { ...inner, iss: client.client_id, aud: rp.meta.issuer }),
    signJwt(client.privateJwk, { alg: 'RS256' }, { ...inner, iss: client.client_id, sub: client.client_id, aud: rp.meta.issuer, exp: now + 60, jti: 'j1' }),
  ]) {
    served.set(path, bad);
    const shown = await rp.authorize(sent);
    assert.ok(shown.page && shown.status === 400, 'an error page');
    assert.match(shown.page, /request object/);
  }
  await unregister(client);
});

test('dynamic_oidcc-server-rotate-keys', async () => {
  // The operator rotates the OP keys (scripts/keys add, then deploy): here, a Worker of the
  // same keys and one more. The suite checks the JWKS before and after.
  const before = await (await w.fetch('/.well-known/jwks.json')).json();
  const rotated = { keys: [...w.signingKeys.keys, generateJwk('RS256')] };
  const w2 = await startWorker({ signingKeys: rotated });
  try {
    const res = await w2.fetch('/.well-known/jwks.json');
    assert.equal(res.status, 200, 'FetchServerKeys');
    const after = await res.json();
    for (const k of after.keys) assert.ok(k.kid, 'CheckForKeyIdInServerJWKs');
    assert.equal(new Set(after.keys.map((k) => k.kid)).size, after.keys.length, 'CheckDistinctKeyIdValueInServerJWKs');
    const old = new Set(before.keys.map((k) => k.kid));
    assert.ok(after.keys.some((k) => !old.has(k.kid) && k.use !== 'enc'), 'VerifyNewJwksHasNewSigningKey');
    assert.ok(before.keys.every((k) => after.keys.some((n) => n.kid === k.kid)), 'VerifyNewJwksStillHasOldSigningKey');
  } finally {
    await w2.stop();
  }
});

test('dynamic_oidcc-ensure-request-object-with-redirect-uri', async () => {
  const client = await registerClient();
  const rp = await rpFor(client);
  const enc = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const good = rp.request();
  const sent = { ...good, redirect_uri: `${BASE}/callback_invalid`, request: `${enc({ alg: 'none' })}.${enc(good)}.` };
  // The object's (registered) redirect_uri is used and the flow completes (OpenID Connect Core §6.1).
  rp.checkCallback(await rp.authorize(sent), good);
  await unregister(client);
});

test('dynamic_oidcc-refresh-token', async () => {
  const client = await registerClient({ grant_types: ['authorization_code', 'refresh_token'] });
  const client2 = await registerClient({ grant_types: ['authorization_code', 'refresh_token'] });
  const rp = await rpFor(client);
  assert.ok(rp.meta.grant_types_supported.includes('refresh_token'), 'EnsureServerConfigurationSupportsRefreshToken');
  const first = await rp.happyFlow({ scope: 'openid offline_access' });
  const rt = first.tokens.refresh_token;
  assert.ok(rt, 'a refresh token is issued (the module is not skipped)');
  assert.match(rt, /^[\x20-\x7E]+$/, 'EnsureRefreshTokenContainsAllowedCharactersOnly');
  await sleep(1000);
  const res = await rp.tokenRequest({ grant_type: 'refresh_token', refresh_token: rt, scope: 'openid' });
  assert.equal(res.status, 200, 'CheckTokenEndpointHttpStatus200');
  const refreshed = await res.json();
  assert.equal(refreshed.token_type.toLowerCase(), 'bearer', 'CheckTokenTypeIsBearer');
  if (refreshed.id_token) {
    const again = rp.checkIdToken(refreshed.id_token, { accessToken: refreshed.access_token });
    for (const c of ['iss', 'sub', 'aud', 'azp', 'auth_time']) assert.deepEqual(again[c], first.claims[c], `CompareIdTokenClaims: ${c}`);
  }
  // Client 2's refresh token with client 1's credentials.
  const rp2 = await rpFor(client2);
  const second = await rp2.happyFlow({ scope: 'openid offline_access' });
  const stolen = await rp.tokenRequest({ grant_type: 'refresh_token', refresh_token: second.tokens.refresh_token, scope: 'openid' });
  assert.equal(stolen.status, 400, 'CheckTokenEndpointHttpStatus400');
  assert.equal((await stolen.json()).error, 'invalid_grant', 'CheckErrorFromTokenEndpointResponseErrorInvalidGrant');
  await unregister(client);
  await unregister(client2);
});

test('dynamic_oidcc-ensure-client-assertion-with-iss-aud-succeeds', async () => {
  const client = await registerClient();
  const rp = await rpFor(client);
  const sent = rp.request();
  const code = rp.checkCallback(await rp.authorize(sent), sent);
  // UpdateClientAuthenticationAssertionClaimsWithISSAud: the assertion's aud is the issuer.
  await rp.exchange(code, sent, { assertionAud: rp.meta.issuer });
  await unregister(client);
});

test('dynamic_oidcc-discovery-endpoint-verification_but_the_implicit_flow', async () => {
  const rp = await new SuiteRp(w, { client: { client_id: 'x', redirect_uris: [CALLBACK] } }).configure();
  const m = rp.meta;
  assert.ok(m.registration_endpoint?.startsWith(m.issuer), 'CheckDiscEndpointRegistrationEndpoint');
  assert.ok(m.response_types_supported.includes('code'), 'CheckDiscEndpointResponseTypesSupported: code');
  assert.ok(m.subject_types_supported.length > 0, 'CheckDiscEndpointSubjectTypesSupported');
  assert.ok(m.id_token_signing_alg_values_supported.includes('RS256'), 'CheckDiscEndpointIdTokenSigningAlgValuesSupported');
  assert.ok(m.userinfo_signing_alg_values_supported.includes('RS256'));
  assert.ok(m.token_endpoint_auth_methods_supported.includes('private_key_jwt'));
  // What the Dynamic variant also requires and RFC 9700 §2.1.2 has us refuse: the implicit
  // response types (id_token, id_token token) and grant. The suite reports a FAILURE here.
  assert.ok(!m.response_types_supported.includes('id_token'), 'the implicit flow is not offered');
  assert.ok(!m.grant_types_supported.includes('implicit'));
});
