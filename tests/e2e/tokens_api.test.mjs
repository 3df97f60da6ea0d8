// Userinfo, revocation and introspection, and forged access tokens at each of them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker, addPartner, sleep } from './harness.mjs';
import { pkce, basicAuth, browserFlow, decodeJwt, forgeAccessTokens } from './oauth.mjs';

let w;
let client;
let other; // a client of another partner
let tokens;
const PASSWORD = 'correct horse battery staple';

before(async () => {
  w = await startWorker();
  await addPartner(w, 'acme', ['https://app.acme.example']);
  await addPartner(w, 'beta', ['https://app.beta.example']);
  client = await (await w.admin('/partners/acme/clients', {
    method: 'POST',
    body: { name: 'Acme', redirect_uris: ['https://app.acme.example/cb'], scopes: ['openid', 'profile', 'email', 'roles'] },
  })).json();
  other = await (await w.admin('/partners/beta/clients', {
    method: 'POST',
    body: { name: 'Beta', redirect_uris: ['https://app.beta.example/cb'], scopes: ['openid'] },
  })).json();
  await w.admin('/users/carol', {
    method: 'PUT',
    body: { password: PASSWORD, name: 'Carol Teacher', email: 'carol@school.example', roles: ['teacher'] },
  });
  tokens = await freshTokens('openid profile roles');
});
after(() => w?.stop());

async function freshTokens(scope) {
  const { verifier, challenge } = pkce();
  const { callback } = await browserFlow(w, { client, username: 'carol', password: PASSWORD, challenge, scope });
  const res = await post('/oauth2/token', {
    grant_type: 'authorization_code',
    code: callback.searchParams.get('code'),
    redirect_uri: client.redirect_uris[0],
    code_verifier: verifier,
  });
  assert.equal(res.status, 200);
  return res.json();
}

function post(path, fields, auth = basicAuth(client.client_id, client.client_secret)) {
  return fetch(`${w.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...(auth ? { authorization: auth } : {}) },
    body: new URLSearchParams(fields).toString(),
  });
}

const userinfo = (token) => fetch(`${w.url}/oauth2/userinfo`, { headers: token ? { authorization: `Bearer ${token}` } : {} });

const forgeries = () => forgeAccessTokens(w, tokens.access_token);

test('userinfo_returns_consented_claims_for_a_valid_token', async () => {
  const res = await userinfo(tokens.access_token);
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(body.sub, decodeJwt(tokens.id_token).payload.sub);
  assert.equal(body.name, 'Carol Teacher');
  assert.equal(body.preferred_username, 'carol');
  assert.deepEqual(body.roles, ['teacher']);
  assert.equal(body.email, undefined, 'email was not consented');
});

test('userinfo_without_token_is_401_with_bearer_challenge', async () => {
  const res = await userinfo(null);
  assert.equal(res.status, 401);
  assert.equal(res.headers.get('www-authenticate'), 'Bearer realm="edgeward"');
  const q = await fetch(`${w.url}/oauth2/userinfo?access_token=${tokens.access_token}`);
  assert.equal(q.status, 401, 'tokens in the query string are not accepted');
});

test('userinfo_refuses_forged_access_tokens', async () => {
  for (const [name, forged] of Object.entries(forgeries())) {
    const res = await userinfo(forged);
    assert.equal(res.status, 401, name);
    assert.equal(res.headers.get('www-authenticate'), 'Bearer realm="edgeward", error="invalid_token"', name);
    const body = await res.json();
    assert.equal(body.error, 'invalid_token', name);
    assert.equal(body.sub, undefined, name);
  }
});

test('introspect_reports_active_tokens_of_the_callers_partner_only', async () => {
  let body = await (await post('/oauth2/introspect', { token: tokens.access_token })).json();
  assert.equal(body.active, true);
  assert.equal(body.client_id, client.client_id);
  assert.equal(body.scope, 'openid profile roles');
  body = await (await post('/oauth2/introspect', { token: tokens.refresh_token, token_type_hint: 'refresh_token' })).json();
  assert.equal(body.active, true);
  assert.equal(body.token_type, 'refresh_token');
  // Another partner's client learns nothing.
  const foreign = await (await post('/oauth2/introspect', { token: tokens.access_token }, basicAuth(other.client_id, other.client_secret))).json();
  assert.deepEqual(foreign, { active: false });
});

test('introspect_refuses_forged_tokens_and_unauthenticated_callers', async () => {
  for (const [name, forged] of Object.entries(forgeries())) {
    const body = await (await post('/oauth2/introspect', { token: forged })).json();
    assert.deepEqual(body, { active: false }, name);
  }
  const anon = await post('/oauth2/introspect', { token: tokens.access_token }, null);
  assert.equal(anon.status, 401);
  assert.equal((await anon.json()).error, 'invalid_client');
  const wrong = await post('/oauth2/introspect', { token: tokens.access_token }, basicAuth(client.client_id, 'nope'));
  assert.equal(wrong.status, 401);
});

test('revoke_refresh_token_ends_the_grant', async () => {
  const t = await freshTokens('openid profile');
  assert.equal((await userinfo(t.access_token)).status, 200);
  const res = await post('/oauth2/revoke', { token: t.refresh_token, token_type_hint: 'refresh_token' });
  assert.equal(res.status, 200);
  assert.deepEqual(await (await post('/oauth2/introspect', { token: t.refresh_token })).json(), { active: false });
  assert.deepEqual(await (await post('/oauth2/introspect', { token: t.access_token })).json(), { active: false });
  assert.equal((await userinfo(t.access_token)).status, 401, 'the access token dies with its grant');
  const refresh = await post('/oauth2/token', { grant_type: 'refresh_token', refresh_token: t.refresh_token });
  assert.equal(refresh.status, 400);
  assert.equal((await refresh.json()).error, 'invalid_grant');
});

test('revoke_access_token_ends_the_grant', async () => {
  const t = await freshTokens('openid');
  assert.equal((await post('/oauth2/revoke', { token: t.access_token })).status, 200);
  assert.equal((await userinfo(t.access_token)).status, 401);
  const refresh = await post('/oauth2/token', { grant_type: 'refresh_token', refresh_token: t.refresh_token });
  assert.equal(refresh.status, 400);
});

test('revoke_by_another_client_changes_nothing', async () => {
  const t = await freshTokens('openid');
  const res = await post('/oauth2/revoke', { token: t.refresh_token }, basicAuth(other.client_id, other.client_secret));
  assert.equal(res.status, 200, 'the same answer as for any token (RFC 7009)');
  assert.equal((await userinfo(t.access_token)).status, 200, 'still valid');
  assert.equal((await post('/oauth2/revoke', { token: 'unknown-token' })).status, 200);
  assert.equal((await post('/oauth2/revoke', { token: t.refresh_token }, null)).status, 401, 'clients authenticate');
});

test('user_deletion_ends_userinfo_and_refresh', async () => {
  await w.admin('/users/dave', { method: 'PUT', body: { password: PASSWORD, name: 'Dave' } });
  const { verifier, challenge } = pkce();
  const { callback } = await browserFlow(w, { client, username: 'dave', password: PASSWORD, challenge, scope: 'openid' });
  const t = await (await post('/oauth2/token', {
    grant_type: 'authorization_code', code: callback.searchParams.get('code'),
    redirect_uri: client.redirect_uris[0], code_verifier: verifier,
  })).json();
  assert.equal((await userinfo(t.access_token)).status, 200);
  assert.equal((await w.admin('/users/dave', { method: 'DELETE' })).status, 204);
  assert.equal((await userinfo(t.access_token)).status, 401);
  const refresh = await post('/oauth2/token', { grant_type: 'refresh_token', refresh_token: t.refresh_token });
  assert.equal(refresh.status, 400);
  assert.equal((await refresh.json()).error, 'invalid_grant');
});

const whoami = (token) => fetch(`${w.url}/edge/whoami`, { headers: { authorization: `Bearer ${token}` } });

async function tokensAndSession(username) {
  await w.admin(`/users/${username}`, { method: 'PUT', body: { password: PASSWORD, name: 'Erin' } });
  const { verifier, challenge } = pkce();
  const { callback, jar } = await browserFlow(w, { client, username, password: PASSWORD, challenge, scope: 'openid profile' });
  const res = await post('/oauth2/token', {
    grant_type: 'authorization_code', code: callback.searchParams.get('code'),
    redirect_uri: client.redirect_uris[0], code_verifier: verifier,
  });
  assert.equal(res.status, 200);
  const t = await res.json();
  assert.equal((await userinfo(t.access_token)).status, 200);
  assert.equal((await whoami(t.access_token)).status, 200);
  assert.equal((await jar.fetch('/account')).status, 200, 'signed in');
  return { t, jar };
}

test('user_new_password_ends_sessions_and_grants_at_once', async () => {
  const { t, jar } = await tokensAndSession('erin');
  // A profile change without a password keeps everything.
  let res = await w.admin('/users/erin', { method: 'PUT', body: { name: 'Erin Renamed' } });
  assert.equal(res.status, 200);
  assert.equal((await whoami(t.access_token)).status, 200, 'a profile change keeps the grant');
  assert.equal((await jar.fetch('/account')).status, 200, 'a profile change keeps the session');

  res = await w.admin('/users/erin', { method: 'PUT', body: { password: 'a brand new password 9', name: 'Erin' } });
  assert.equal(res.status, 200);
  const account = await jar.fetch('/account');
  assert.equal(account.status, 302, 'the session has ended');
  assert.match(account.headers.get('location'), /\/login\?/);
  assert.equal((await userinfo(t.access_token)).status, 401);
  const who = await whoami(t.access_token);
  assert.equal(who.status, 401, 'the access token is revoked at the gateway');
  assert.equal((await who.json()).error, 'invalid_token');
  res = await post('/oauth2/token', { grant_type: 'refresh_token', refresh_token: t.refresh_token });
  assert.equal(res.status, 400);
  assert.equal((await res.json()).error, 'invalid_grant');
  // The new password works and gives a new grant.
  const { verifier, challenge } = pkce();
  const { callback } = await browserFlow(w, { client, username: 'erin', password: 'a brand new password 9', challenge, scope: 'openid' });
  res = await post('/oauth2/token', { grant_type: 'authorization_code', code: callback.searchParams.get('code'), redirect_uri: client.redirect_uris[0], code_verifier: verifier });
  assert.equal(res.status, 200);
});

test('user_deletion_revokes_access_tokens_at_the_gateway', async () => {
  const { t } = await tokensAndSession('fern');
  assert.equal((await w.admin('/users/fern', { method: 'DELETE' })).status, 204);
  const who = await whoami(t.access_token);
  assert.equal(who.status, 401);
  assert.equal((await who.json()).error, 'invalid_token');
});

test('recreated_username_does_not_inherit_the_old_users_grants', async () => {
  await w.admin('/users/gina', { method: 'PUT', body: { password: PASSWORD, name: 'Gina Original' } });
  const { verifier, challenge } = pkce();
  const { callback } = await browserFlow(w, { client, username: 'gina', password: PASSWORD, challenge, scope: 'openid profile' });
  const t = await (await post('/oauth2/token', {
    grant_type: 'authorization_code', code: callback.searchParams.get('code'),
    redirect_uri: client.redirect_uris[0], code_verifier: verifier,
  })).json();
  assert.equal((await w.admin('/users/gina', { method: 'DELETE' })).status, 204);
  await w.admin('/users/gina', { method: 'PUT', body: { password: PASSWORD, name: 'Gina Newcomer' } });
  const info = await userinfo(t.access_token);
  assert.equal(info.status, 401, 'the new person never consented');
  assert.doesNotMatch(await info.text(), /Newcomer/);
  const refresh = await post('/oauth2/token', { grant_type: 'refresh_token', refresh_token: t.refresh_token });
  assert.equal(refresh.status, 400);
  assert.equal((await refresh.json()).error, 'invalid_grant');
});

test('refresh_with_narrowed_scope_releases_only_that_scopes_claims', async () => {
  const t = await freshTokens('openid profile');
  const res = await post('/oauth2/token', { grant_type: 'refresh_token', refresh_token: t.refresh_token, scope: 'openid' });
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(body.scope, 'openid');
  const id = decodeJwt(body.id_token).payload;
  assert.equal(id.name, undefined);
  assert.equal(id.preferred_username, undefined);
});

test('revoke_with_a_guessed_refresh_secret_changes_nothing', async () => {
  const t = await freshTokens('openid');
  const gid = t.refresh_token.split('.')[0];
  const guess = `${gid}.${'A'.repeat(43)}`;
  assert.equal((await post('/oauth2/revoke', { token: guess })).status, 200);
  assert.equal((await userinfo(t.access_token)).status, 200, 'the grant is intact');
  assert.equal((await post('/oauth2/token', { grant_type: 'refresh_token', refresh_token: t.refresh_token })).status, 200);
});

test('userinfo_and_introspection_refuse_tokens_the_gateway_refuses', async () => {
  // Its own Worker, with a one-second cache, so registry changes are seen quickly.
  const w2 = await startWorker({ vars: { GATE_CACHE_TTL_SECONDS: '1' } });
  try {
    const newClient = async (partner, name) => (await w2.admin(`/partners/${partner}/clients`, {
      method: 'POST',
      body: { name, redirect_uris: [`https://app.${partner}.example/cb`], scopes: ['openid', 'profile'] },
    })).json();
    const tokensOf = async (c) => {
      const { verifier, challenge } = pkce();
      const { callback } = await browserFlow(w2, { client: c, username: 'dave', password: PASSWORD, challenge, scope: 'openid profile' });
      const res = await fetch(`${w2.url}/oauth2/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(c.client_id, c.client_secret) },
        body: new URLSearchParams({ grant_type: 'authorization_code', code: callback.searchParams.get('code'), redirect_uri: c.redirect_uris[0], code_verifier: verifier }),
      });
      assert.equal(res.status, 200);
      return res.json();
    };
    const info = (t) => fetch(`${w2.url}/oauth2/userinfo`, { headers: { authorization: `Bearer ${t}` } });
    const introspect = async (caller, t) => (await fetch(`${w2.url}/oauth2/introspect`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(caller.client_id, caller.client_secret) },
      body: new URLSearchParams({ token: t }),
    })).json();
    const refusedAsInvalidToken = async (t, what) => {
      const res = await info(t);
      assert.equal(res.status, 401, what);
      assert.equal(res.headers.get('www-authenticate'), 'Bearer realm="edgeward", error="invalid_token"', what);
      const body = await res.json();
      assert.equal(body.error, 'invalid_token', what);
      assert.equal(body.sub, undefined, what);
    };
    await addPartner(w2, 'acme', ['https://app.acme.example']);
    await addPartner(w2, 'gone', ['https://app.gone.example']);
    await w2.admin('/users/dave', { method: 'PUT', body: { password: PASSWORD, name: 'Dave' } });
    const removed = await newClient('acme', 'Removed');
    const witness = await newClient('acme', 'Witness');
    const ofSuspended = await newClient('acme', 'Suspended later');
    const ofGone = await newClient('gone', 'Gone');
    const tRemoved = await tokensOf(removed);
    const tSuspended = await tokensOf(ofSuspended);
    const tGone = await tokensOf(ofGone);
    assert.equal((await info(tRemoved.access_token)).status, 200);
    assert.equal((await introspect(witness, tRemoved.access_token)).active, true);
    assert.equal((await info(tGone.access_token)).status, 200);

    // A removed client's tokens: refused at userinfo, inactive to its partner's other clients.
    assert.equal((await w2.admin(`/clients/${removed.client_id}`, { method: 'DELETE' })).status, 204);
    await sleep(1200);
    await refusedAsInvalidToken(tRemoved.access_token, 'removed client');
    assert.deepEqual(await introspect(witness, tRemoved.access_token), { active: false });
    // The gateway's answer for the same token, for comparison.
    const whoami = await fetch(`${w2.url}/edge/whoami`, { headers: { authorization: `Bearer ${tRemoved.access_token}` } });
    assert.equal(whoami.status, 401);
    assert.equal((await whoami.json()).error, 'invalid_token');

    // A removed partner's tokens.
    assert.equal((await w2.admin('/partners/gone', { method: 'DELETE' })).status, 204);
    await sleep(1200);
    await refusedAsInvalidToken(tGone.access_token, 'removed partner');

    // A suspended partner's tokens (acme's; its clients cannot even call introspection then).
    assert.equal((await info(tSuspended.access_token)).status, 200);
    await addPartner(w2, 'acme', ['https://app.acme.example'], 'suspended');
    await sleep(1200);
    await refusedAsInvalidToken(tSuspended.access_token, 'suspended partner');
    const suspendedCaller = await fetch(`${w2.url}/oauth2/introspect`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(witness.client_id, witness.client_secret) },
      body: new URLSearchParams({ token: tSuspended.access_token }),
    });
    assert.equal(suspendedCaller.status, 401);
    assert.equal((await suspendedCaller.json()).error, 'invalid_client');
  } finally {
    await w2.stop();
  }
});
