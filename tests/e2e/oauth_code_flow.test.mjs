// The authorization code flow end to end over HTTP: authorize, login, consent, token, refresh;
// and the rules that guard it, each with a test that tries to break it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker, addPartner } from './harness.mjs';
import { CookieJar, pkce, formFields, verifyJwt, decodeJwt, basicAuth, browserFlow } from './oauth.mjs';

let w;
let client;
let jwks;
const PASSWORD = 'correct horse battery staple';

before(async () => {
  w = await startWorker();
  await addPartner(w, 'acme', ['https://app.acme.example']);
  const res = await w.admin('/partners/acme/clients', {
    method: 'POST',
    body: {
      name: 'Acme Classroom',
      redirect_uris: ['https://app.acme.example/callback'],
      scopes: ['openid', 'profile', 'email', 'roles', 'classes.read'],
    },
  });
  client = await res.json();
  const u = await w.admin('/users/alice', {
    method: 'PUT',
    body: { password: PASSWORD, name: 'Alice Example', email: 'alice@school.example', roles: ['pupil'] },
  });
  assert.equal(u.status, 201);
  jwks = await (await w.fetch('/.well-known/jwks.json')).json();
});
after(() => w?.stop());

const token = (fields, auth = basicAuth(client.client_id, client.client_secret), headers = {}) =>
  fetch(`${w.url}/oauth2/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...(auth ? { authorization: auth } : {}), ...headers },
    body: new URLSearchParams(fields).toString(),
  });

async function codeFor(opts = {}) {
  const { verifier, challenge } = pkce();
  const { callback, jar } = await browserFlow(w, {
    client,
    username: 'alice',
    password: PASSWORD,
    challenge,
    nonce: 'n-0S6_WzA2Mj',
    ...opts,
  });
  return { code: callback.searchParams.get('code'), callback, verifier, jar };
}

async function expectError(res, status, error) {
  assert.equal(res.status, status);
  assert.equal(res.headers.get('cache-control'), 'no-store');
  const body = await res.json();
  assert.equal(body.error, error, JSON.stringify(body));
  assert.equal(body.access_token, undefined);
  assert.equal(body.refresh_token, undefined);
  return body;
}

test('code_flow_issues_verifiable_tokens', async () => {
  const { code, callback, verifier } = await codeFor({ scope: 'openid profile email' });
  assert.equal(callback.origin + callback.pathname, 'https://app.acme.example/callback');
  assert.equal(callback.searchParams.get('state'), 'st-1');
  assert.equal(callback.searchParams.get('iss'), w.url, 'RFC 9207 iss');
  // `{grant_id}.{secret}`: alice lives in the EU (the harness's DEFAULT_USER_REGION), so her
  // grant id names the region its object is in.
  assert.match(code, /^eu_[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}$/);

  const res = await token({ grant_type: 'authorization_code', code, redirect_uri: client.redirect_uris[0], code_verifier: verifier });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('cache-control'), 'no-store');
  const body = await res.json();
  assert.equal(body.token_type, 'Bearer');
  assert.equal(body.expires_in, 300);
  assert.equal(body.scope, 'openid profile email');
  assert.match(body.refresh_token, /^eu_[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}$/);

  const at = verifyJwt(body.access_token, jwks);
  assert.equal(decodeJwt(body.access_token).header.typ, 'at+jwt');
  assert.equal(at.iss, w.url);
  assert.equal(at.aud, `${w.url}/api`);
  assert.equal(at.client_id, client.client_id);
  assert.equal(at.scope, 'openid profile email');
  assert.ok(at.exp - at.iat === 300 && at.jti && at.sub);
  assert.notEqual(at.sub, 'alice', 'subjects are pairwise, not usernames');

  const id = verifyJwt(body.id_token, jwks);
  assert.equal(id.iss, w.url);
  assert.equal(id.aud, client.client_id);
  assert.equal(id.azp, client.client_id);
  assert.equal(id.sub, at.sub);
  assert.equal(id.nonce, 'n-0S6_WzA2Mj');
  // The scopes' claims are the UserInfo endpoint's in the code flow (OIDC Core §5.4): the ID
  // token names the person by `sub` alone unless a claim was asked of it by name.
  for (const claim of ['name', 'preferred_username', 'email', 'roles']) assert.equal(id[claim], undefined, claim);
  assert.ok(id.auth_time <= id.iat);
  assert.ok(id.at_hash);
  const info = await (await w.fetch('/oauth2/userinfo', { headers: { authorization: `Bearer ${body.access_token}` } })).json();
  assert.equal(info.sub, id.sub);
  assert.equal(info.name, 'Alice Example');
  assert.equal(info.preferred_username, 'alice');
  assert.equal(info.email, 'alice@school.example');
  assert.equal(info.roles, undefined, 'roles were not consented');
});

test('code_flow_releases_only_consented_claims', async () => {
  const { code, verifier } = await codeFor({ scope: 'openid' });
  const body = await (await token({ grant_type: 'authorization_code', code, redirect_uri: client.redirect_uris[0], code_verifier: verifier })).json();
  const id = verifyJwt(body.id_token, jwks);
  for (const claim of ['name', 'preferred_username', 'email', 'roles']) assert.equal(id[claim], undefined, claim);
});

test('consent_is_remembered_per_user_client_and_scopes', async () => {
  const jar = new CookieJar(w.url);
  const { challenge } = pkce();
  await browserFlow(w, { client, username: 'alice', password: PASSWORD, challenge, scope: 'openid', jar });
  // Same scopes again: straight back with a code, no consent page.
  const params = new URLSearchParams({
    response_type: 'code', client_id: client.client_id, redirect_uri: client.redirect_uris[0],
    scope: 'openid', code_challenge: challenge, code_challenge_method: 'S256', state: 's2',
  });
  const again = await jar.fetch(`/oauth2/authorize?${params}`);
  assert.equal(again.status, 302);
  assert.match(again.headers.get('location'), /^https:\/\/app\.acme\.example\/callback\?code=/);
  // More scopes: consent again.
  params.set('scope', 'openid roles');
  const more = await jar.fetch(`/oauth2/authorize?${params}`);
  assert.equal(more.status, 200);
  assert.match(await more.text(), /See your roles at school/);
  // prompt=consent forces the page even for consented scopes.
  params.set('scope', 'openid');
  params.set('prompt', 'consent');
  assert.equal((await jar.fetch(`/oauth2/authorize?${params}`)).status, 200);
});

test('authorize_deny_redirects_access_denied_with_state', async () => {
  const jar = new CookieJar(w.url);
  const { challenge } = pkce();
  const params = new URLSearchParams({
    response_type: 'code', client_id: client.client_id, redirect_uri: client.redirect_uris[0],
    scope: 'openid email', code_challenge: challenge, code_challenge_method: 'S256', state: 'deny-me',
    prompt: 'consent', // alice consented to these scopes earlier
  });
  let res = await jar.fetch(`/oauth2/authorize?${params}`);
  res = await jar.fetch(res.headers.get('location'));
  res = await jar.postForm('/login', { ...formFields(await res.text()), username: 'alice', password: PASSWORD });
  res = await jar.fetch(res.headers.get('location'));
  assert.equal(res.status, 200, 'the consent page');
  const fields = formFields(await res.text());
  res = await jar.postForm('/oauth2/authorize', { ...fields, decision: 'deny' });
  assert.equal(res.status, 303, 'after a form post (RFC 9700 §4.12)');
  const loc = new URL(res.headers.get('location'));
  assert.equal(loc.origin + loc.pathname, 'https://app.acme.example/callback');
  assert.equal(loc.searchParams.get('error'), 'access_denied');
  assert.equal(loc.searchParams.get('state'), 'deny-me');
  assert.equal(loc.searchParams.get('code'), null);
});

test('login_wrong_password_same_message_whether_or_not_user_exists', async () => {
  const jar = new CookieJar(w.url);
  let res = await jar.fetch(`/login?return_to=${encodeURIComponent('/oauth2/authorize?x=1')}`);
  const fields = formFields(await res.text());
  const bodies = [];
  for (const [username, password] of [['alice', 'wrong password'], ['nobody-here', 'wrong password'], ['Not A Valid Name!', 'x']]) {
    res = await jar.postForm('/login', { ...fields, username, password });
    assert.equal(res.status, 401, username);
    assert.equal(res.headers.get('set-cookie'), null, 'no session');
    const html = await res.text();
    bodies.push(html.match(/role="alert"[^>]*>([^<]*)</)[1]);
  }
  assert.equal(new Set(bodies).size, 1, `messages differ: ${bodies}`);
});

test('login_form_without_csrf_token_is_refused', async () => {
  const jar = new CookieJar(w.url);
  await jar.fetch(`/login?return_to=${encodeURIComponent('/account')}`);
  for (const csrf of [undefined, 'forged-token-forged-token-forged-token-xxxx']) {
    const fields = { username: 'alice', password: PASSWORD, return_to: '/account', ...(csrf ? { csrf } : {}) };
    const res = await jar.postForm('/login', fields);
    assert.equal(res.status, 403);
    assert.equal(res.headers.get('location'), null);
    assert.ok(![...jar.cookies.keys()].some((k) => k.includes('session')), 'no session was created');
  }
  // A form posted from a browser that never loaded it (no CSRF cookie at all).
  const stranger = new CookieJar(w.url);
  const res = await stranger.postForm('/login', { username: 'alice', password: PASSWORD, return_to: '/account', csrf: 'x'.repeat(43) });
  assert.equal(res.status, 403);
});

test('login_return_to_must_be_local', async () => {
  for (const rt of ['https://evil.example/', '//evil.example/x', '/admin/partners', '/\\evil.example']) {
    const res = await fetch(`${w.url}/login?return_to=${encodeURIComponent(rt)}`, { redirect: 'manual' });
    assert.equal(res.status, 400, rt);
    assert.equal(res.headers.get('location'), null);
  }
});

test('token_code_replay_is_refused_and_revokes_the_grant', async () => {
  // RFC 6749 §4.1.2: a code used twice revokes the tokens issued from it.
  const { code, verifier } = await codeFor();
  const fields = { grant_type: 'authorization_code', code, redirect_uri: client.redirect_uris[0], code_verifier: verifier };
  const first = await (await token(fields)).json();
  assert.ok(first.refresh_token);
  await expectError(await token(fields), 400, 'invalid_grant');
  await expectError(await token({ grant_type: 'refresh_token', refresh_token: first.refresh_token }), 400, 'invalid_grant');
});

test('token_code_parallel_redemptions_exactly_one_wins', async () => {
  const { code, verifier } = await codeFor();
  const fields = { grant_type: 'authorization_code', code, redirect_uri: client.redirect_uris[0], code_verifier: verifier };
  const results = await Promise.all(Array.from({ length: 20 }, () => token(fields)));
  const statuses = results.map((r) => r.status);
  assert.equal(statuses.filter((s) => s === 200).length, 1, `statuses ${statuses}`);
  assert.equal(statuses.filter((s) => s === 400).length, 19, `statuses ${statuses}`);
  for (const r of results) {
    const body = await r.json();
    if (r.status === 400) assert.equal(body.error, 'invalid_grant');
  }
});

test('token_pkce_wrong_or_missing_verifier_is_invalid', async () => {
  const { code, verifier } = await codeFor();
  const base = { grant_type: 'authorization_code', code, redirect_uri: client.redirect_uris[0] };
  await expectError(await token(base), 400, 'invalid_request');
  await expectError(await token({ ...base, code_verifier: pkce().verifier }), 400, 'invalid_grant');
  // The code survives failed attempts and still works with the right verifier.
  assert.equal((await token({ ...base, code_verifier: verifier })).status, 200);
});

test('token_redirect_uri_must_match_the_authorization_request', async () => {
  const { code, verifier } = await codeFor();
  for (const redirect_uri of [undefined, 'https://app.acme.example/callback/', 'https://app.acme.example/other']) {
    const fields = { grant_type: 'authorization_code', code, code_verifier: verifier, ...(redirect_uri ? { redirect_uri } : {}) };
    await expectError(await token(fields), 400, 'invalid_grant');
  }
});

test('token_code_presented_by_another_client_is_invalid_grant', async () => {
  const other = await (await w.admin('/partners/acme/clients', {
    method: 'POST',
    body: { name: 'Other', redirect_uris: ['https://app.acme.example/callback'], scopes: ['openid'] },
  })).json();
  const { code, verifier } = await codeFor();
  const fields = { grant_type: 'authorization_code', code, redirect_uri: client.redirect_uris[0], code_verifier: verifier };
  await expectError(await token(fields, basicAuth(other.client_id, other.client_secret)), 400, 'invalid_grant');
  assert.equal((await token(fields)).status, 200, 'the rightful client can still redeem it');
});

test('token_client_authentication_failures_are_invalid_client_401', async () => {
  const fields = { grant_type: 'authorization_code', code: 'x', redirect_uri: client.redirect_uris[0], code_verifier: 'v' };
  for (const auth of [basicAuth(client.client_id, 'wrong'), basicAuth('unknown-client-id', 'x'), basicAuth(client.client_id, '')]) {
    const res = await token(fields, auth);
    await expectError(res, 401, 'invalid_client');
    assert.equal(res.headers.get('www-authenticate'), 'Basic realm="edgeward"');
  }
  // No credentials at all, or a wrong secret in the body (a secret client may send it there too).
  await expectError(await token(fields, null), 401, 'invalid_client');
  await expectError(await token({ ...fields, client_id: client.client_id, client_secret: 'wrong' }, null), 401, 'invalid_client');
});

test('token_both_header_and_body_credentials_is_invalid_request', async () => {
  const fields = { grant_type: 'client_credentials', client_id: client.client_id, client_secret: client.client_secret };
  await expectError(await token(fields), 400, 'invalid_request');
});

test('token_refresh_rotates_and_reuse_revokes_the_family', async () => {
  const { code, verifier } = await codeFor();
  const first = await (await token({ grant_type: 'authorization_code', code, redirect_uri: client.redirect_uris[0], code_verifier: verifier })).json();
  const second = await (await token({ grant_type: 'refresh_token', refresh_token: first.refresh_token })).json();
  assert.ok(second.access_token && second.refresh_token && second.id_token);
  assert.notEqual(second.refresh_token, first.refresh_token);
  // Narrowing scope on refresh is allowed, widening is not.
  await expectError(await token({ grant_type: 'refresh_token', refresh_token: second.refresh_token, scope: 'openid roles' }), 400, 'invalid_scope');
  // Reuse of the superseded token: refused, and the current one dies with the family.
  await expectError(await token({ grant_type: 'refresh_token', refresh_token: first.refresh_token }), 400, 'invalid_grant');
  await expectError(await token({ grant_type: 'refresh_token', refresh_token: second.refresh_token }), 400, 'invalid_grant');
});

test('token_refresh_reuse_is_caught_after_many_rotations', async () => {
  // A thief who rotates the family 70 times first must not hide the reuse of the token he stole
  // from (the grant record keeps the last 64 hashes; older ones are kept apart).
  const { code, verifier } = await codeFor({ scope: 'openid' });
  const first = await (await token({ grant_type: 'authorization_code', code, redirect_uri: client.redirect_uris[0], code_verifier: verifier })).json();
  let current = first.refresh_token;
  for (let i = 0; i < 70; i++) {
    const res = await token({ grant_type: 'refresh_token', refresh_token: current });
    assert.equal(res.status, 200, `rotation ${i}`);
    current = (await res.json()).refresh_token;
  }
  const reuse = await expectError(await token({ grant_type: 'refresh_token', refresh_token: first.refresh_token }), 400, 'invalid_grant');
  assert.match(reuse.error_description, /already used; its grant is revoked/);
  await expectError(await token({ grant_type: 'refresh_token', refresh_token: current }), 400, 'invalid_grant');
});

test('token_unknown_grant_type_and_malformed_requests', async () => {
  await expectError(await token({ grant_type: 'password', username: 'alice', password: PASSWORD }), 400, 'unsupported_grant_type');
  await expectError(await token({}), 400, 'invalid_request');
  await expectError(await token({ grant_type: 'authorization_code' }), 400, 'invalid_request');
  await expectError(await token({ grant_type: 'authorization_code', code: 'not-a-code' }), 400, 'invalid_grant');
  const dup = await fetch(`${w.url}/oauth2/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(client.client_id, client.client_secret) },
    body: 'grant_type=client_credentials&grant_type=authorization_code',
  });
  await expectError(dup, 400, 'invalid_request');
  const json = await fetch(`${w.url}/oauth2/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: basicAuth(client.client_id, client.client_secret) },
    body: '{"grant_type":"client_credentials"}',
  });
  await expectError(json, 400, 'invalid_request');
});

test('token_client_credentials_needs_the_grant_type', async () => {
  await expectError(await token({ grant_type: 'client_credentials' }), 400, 'unauthorized_client');
  const svc = await (await w.admin('/partners/acme/clients', {
    method: 'POST',
    body: { name: 'Sync', grant_types: ['client_credentials'], scopes: ['classes.read', 'openid'] },
  })).json();
  const ok = await token({ grant_type: 'client_credentials' }, basicAuth(svc.client_id, svc.client_secret));
  assert.equal(ok.status, 200);
  const body = await ok.json();
  assert.equal(body.refresh_token, undefined);
  assert.equal(body.id_token, undefined);
  const at = verifyJwt(body.access_token, jwks);
  assert.equal(at.sub, svc.client_id);
  assert.equal(at.scope, 'classes.read');
  await expectError(await token({ grant_type: 'client_credentials', scope: 'openid' }, basicAuth(svc.client_id, svc.client_secret)), 400, 'invalid_scope');
});

test('token_public_client_with_pkce_and_no_secret', async () => {
  const spa = await (await w.admin('/partners/acme/clients', {
    method: 'POST',
    body: { name: 'SPA', redirect_uris: ['https://app.acme.example/spa'], scopes: ['openid'], token_endpoint_auth_method: 'none' },
  })).json();
  const { verifier, challenge } = pkce();
  const { callback } = await browserFlow(w, { client: spa, username: 'alice', password: PASSWORD, challenge, scope: 'openid' });
  const code = callback.searchParams.get('code');
  const res = await token({ grant_type: 'authorization_code', code, redirect_uri: spa.redirect_uris[0], code_verifier: verifier, client_id: spa.client_id }, null);
  assert.equal(res.status, 200);
  // A public client cannot present a secret it does not have.
  await expectError(await token({ grant_type: 'authorization_code', code, client_id: spa.client_id, client_secret: 'guess' }, null), 401, 'invalid_client');
});

test('token_endpoint_speaks_cors_to_partner_origins_only', async () => {
  const spa = await (await w.admin('/partners/acme/clients', {
    method: 'POST',
    body: { name: 'SPA 2', redirect_uris: ['https://app.acme.example/spa2'], scopes: ['openid'], token_endpoint_auth_method: 'none' },
  })).json();
  const pre = await fetch(`${w.url}/oauth2/token`, {
    method: 'OPTIONS',
    headers: { origin: 'https://app.acme.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
  });
  assert.equal(pre.status, 204);
  assert.equal(pre.headers.get('access-control-allow-origin'), 'https://app.acme.example');
  const denied = await fetch(`${w.url}/oauth2/token`, {
    method: 'OPTIONS',
    headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' },
  });
  assert.equal(denied.status, 403);
  assert.equal(denied.headers.get('access-control-allow-origin'), null);

  for (const [origin, allowed] of [['https://app.acme.example', true], ['https://evil.example', false]]) {
    const { verifier, challenge } = pkce();
    const { callback } = await browserFlow(w, { client: spa, username: 'alice', password: PASSWORD, challenge, scope: 'openid' });
    const res = await token(
      { grant_type: 'authorization_code', code: callback.searchParams.get('code'), redirect_uri: spa.redirect_uris[0], code_verifier: verifier, client_id: spa.client_id },
      null,
      { origin },
    );
    assert.equal(res.status, 200, origin);
    assert.equal(res.headers.get('access-control-allow-origin'), allowed ? origin : null, origin);
  }
});
