// The OpenID Foundation's RP-Initiated Logout OP test plan
// (oidcc-rp-initiated-logout-certification-test-plan; static client, discovery), module by module,
// each test named after the module and checking what it checks (`AbstractOIDCCRpInitiatedLogout`:
// a login, then the end-session request; a "success" module must come back to the registered
// post_logout_redirect_uri with exactly the state, and a prompt=none afterwards must fail; an
// "error page" module must not come back at all).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker, addPartner } from './harness.mjs';
import { SuiteRp, randomValue } from './conformance.mjs';

const PASSWORD = 'conformance suite password';
const BASE = 'https://suite.example/test/a/edgeward';
const POST_LOGOUT = `${BASE}/post_logout_redirect`;
let w;
let client;

before(async () => {
  w = await startWorker();
  await addPartner(w, 'suite', ['https://suite.example']);
  client = await (await w.admin('/partners/suite/clients', {
    method: 'POST',
    body: { name: 'Conformance suite', redirect_uris: [`${BASE}/callback`], post_logout_redirect_uris: [POST_LOGOUT], scopes: ['openid'], require_pkce: false },
  })).json();
  await w.admin('/users/buffy', { method: 'PUT', body: { password: PASSWORD, name: 'Buffy Summers' } });
});
after(() => w?.stop());

/** `CreateRandomEndSessionState`: letters, digits and 30 punctuation characters ('+', ' ', ';' as '~'). */
function endSessionState() {
  const punct = '!"#$%&\'()*,-./:<=>?@[\\]^_`{|}~'.split('');
  const picks = Array.from({ length: 30 }, (_, i) => punct[i % punct.length]);
  return randomValue(50) + '0123456789' + picks.join('');
}

/** The login every module starts with (128-character state), in a fresh browser. */
async function loggedIn() {
  const rp = await new SuiteRp(w, { client, username: 'buffy', password: PASSWORD }).configure();
  assert.ok(rp.meta.end_session_endpoint, 'CheckDiscEndSessionEndpoint');
  const flow = await rp.happyFlow({ state: randomValue(128, '-._~') });
  return { rp, ...flow };
}

async function endSession(rp, jar, params) {
  return jar.fetch(`${new URL(rp.meta.end_session_endpoint).pathname}?${new URLSearchParams(params)}`);
}

/** A "success" module: back at the post-logout URI with `state` (or none), then prompt=none fails. */
async function assertLoggedOutAndBack(rp, jar, res, state) {
  assert.equal(res.status, 302, 'redirected to the post_logout_redirect_uri');
  const back = new URL(res.headers.get('location'));
  assert.equal(back.origin + back.pathname, POST_LOGOUT);
  if (state === undefined) assert.equal(back.searchParams.get('state'), null, 'CheckNoPostLogoutState');
  else assert.equal(back.searchParams.get('state'), state, 'CheckPostLogoutState: byte for byte');
  for (const k of back.searchParams.keys()) assert.equal(k, 'state', 'CheckForUnexpectedParametersInPostLogoutRedirect');
  await assertSessionEnded(rp, jar);
}

async function assertSessionEnded(rp, jar) {
  const sent = rp.request({ prompt: 'none' });
  const error = rp.checkErrorCallback(await rp.authorize(sent, { jar }), sent);
  assert.ok(['login_required', 'interaction_required', 'account_selection_required', 'consent_required'].includes(error), 'CheckErrorFromAuthorizationEndpointIsOneThatRequiredAUserInterface');
}

/** An "error page" module: our page (an error or a confirmation), never the post-logout URI. */
async function assertOurPageNotBack(res) {
  assert.equal(res.headers.get('location'), null, 'a call to the post_logout_redirect_uri fails the module');
  assert.equal(res.status, 200);
  assert.match(await res.text(), /Sign out of your school account\?/, 'the person is asked');
}

test('logout_oidcc-rp-initiated-logout-discovery-endpoint-verification', async () => {
  const d = await (await w.fetch('/.well-known/openid-configuration')).json();
  assert.equal(d.end_session_endpoint, `${d.issuer}/oauth2/logout`, 'CheckDiscEndSessionEndpoint (https under an https issuer)');
});

test('logout_oidcc-rp-initiated-logout', async () => {
  const { rp, jar, tokens } = await loggedIn();
  const state = endSessionState();
  const res = await endSession(rp, jar, { id_token_hint: tokens.id_token, post_logout_redirect_uri: POST_LOGOUT, state });
  await assertLoggedOutAndBack(rp, jar, res, state);
});

test('logout_oidcc-rp-initiated-logout-bad-post-logout-redirect-uri', async () => {
  const { rp, jar, tokens } = await loggedIn();
  await assertOurPageNotBack(await endSession(rp, jar, { id_token_hint: tokens.id_token, post_logout_redirect_uri: `${BASE}/bad_post_logout_redirect_uri`, state: endSessionState() }));
});

test('logout_oidcc-rp-initiated-logout-modified-id-token-hint', async () => {
  const { rp, jar, tokens } = await loggedIn();
  const [, payload] = tokens.id_token.split('.');
  const none = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${payload}.`;
  await assertOurPageNotBack(await endSession(rp, jar, { id_token_hint: none, post_logout_redirect_uri: POST_LOGOUT, state: endSessionState() }));
});

test('logout_oidcc-rp-initiated-logout-no-id-token-hint', async () => {
  const { rp, jar } = await loggedIn();
  await assertOurPageNotBack(await endSession(rp, jar, { post_logout_redirect_uri: POST_LOGOUT, state: endSessionState() }));
});

test('logout_oidcc-rp-initiated-logout-no-params', async () => {
  const { rp, jar } = await loggedIn();
  // Without a hint the person confirms; then they are logged out on our own page.
  const res = await endSession(rp, jar, {});
  assert.equal(res.headers.get('location'), null);
  const { formFields } = await import('./oauth.mjs');
  const done = await jar.postForm(new URL(rp.meta.end_session_endpoint).pathname, formFields(await res.text()));
  assert.equal(done.status, 200);
  assert.match(await done.text(), /You are signed out/);
  await assertSessionEnded(rp, jar);
});

test('logout_oidcc-rp-initiated-logout-no-post-logout-redirect-uri', async () => {
  const { rp, jar, tokens } = await loggedIn();
  const res = await endSession(rp, jar, { id_token_hint: tokens.id_token, state: endSessionState() });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('location'), null);
  assert.match(await res.text(), /You are signed out/, 'the successful logout page');
  await assertSessionEnded(rp, jar);
});

test('logout_oidcc-rp-initiated-logout-no-state', async () => {
  const { rp, jar, tokens } = await loggedIn();
  const res = await endSession(rp, jar, { id_token_hint: tokens.id_token, post_logout_redirect_uri: POST_LOGOUT });
  await assertLoggedOutAndBack(rp, jar, res, undefined);
});

test('logout_oidcc-rp-initiated-logout-only-state', async () => {
  const { rp, jar } = await loggedIn();
  const res = await endSession(rp, jar, { state: endSessionState() });
  assert.equal(res.headers.get('location'), null, 'no redirect');
  assert.equal(res.status, 200);
  const { formFields } = await import('./oauth.mjs');
  const done = await jar.postForm(new URL(rp.meta.end_session_endpoint).pathname, formFields(await res.text()));
  assert.equal(done.headers.get('location'), null);
  assert.match(await done.text(), /You are signed out/);
  await assertSessionEnded(rp, jar);
});

test('logout_oidcc-rp-initiated-logout-query-added-to-post-logout-redirect-uri', async () => {
  const { rp, jar, tokens } = await loggedIn();
  await assertOurPageNotBack(await endSession(rp, jar, { id_token_hint: tokens.id_token, post_logout_redirect_uri: `${POST_LOGOUT}?foo=bar`, state: endSessionState() }));
});

test('logout_oidcc-rp-initiated-logout-bad-id-token-hint', async () => {
  const { rp, jar, claims } = await loggedIn();
  // GenerateFakeIdTokenClaims + SignFakeIdToken: a token the suite signed (HS256 from the secret).
  const { createHmac } = await import('node:crypto');
  const enc = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const input = `${enc({ alg: 'HS256' })}.${enc({ iss: client.client_id, sub: claims.sub, aud: w.url, nonce: 'flibble', iat: now, exp: now + 300 })}`;
  const fake = `${input}.${createHmac('sha256', client.client_secret).update(input).digest('base64url')}`;
  await assertOurPageNotBack(await endSession(rp, jar, { id_token_hint: fake, post_logout_redirect_uri: POST_LOGOUT, state: endSessionState() }));
});
