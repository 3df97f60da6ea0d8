// The admin API for OAuth clients and platform users: secrets shown once and stored only as
// hashes, redirect URIs only on the partner's origins, password hashes never returned.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker, addPartner } from './harness.mjs';

let w;
before(async () => {
  w = await startWorker();
  await addPartner(w, 'acme', ['https://app.acme.example', 'http://localhost:3000']);
});
after(() => w?.stop());

const newClient = (body, partner = 'acme') =>
  w.admin(`/partners/${partner}/clients`, { method: 'POST', body });

test('client_registration_returns_the_secret_once', async () => {
  const res = await newClient({
    name: 'Acme Web',
    redirect_uris: ['https://App.acme.example/callback', 'http://localhost:3000/cb'],
    scopes: ['openid', 'profile', 'email'],
  });
  assert.equal(res.status, 201);
  const c = await res.json();
  assert.match(c.client_id, /^[A-Za-z0-9_-]{22}$/);
  assert.match(c.client_secret, /^[A-Za-z0-9_-]{43}$/);
  assert.equal(c.partner_id, 'acme');
  assert.deepEqual(c.redirect_uris, ['https://app.acme.example/callback', 'http://localhost:3000/cb']);
  assert.deepEqual(c.grant_types, ['authorization_code', 'refresh_token']);
  assert.equal(c.token_endpoint_auth_method, 'client_secret_basic');
  assert.equal(c.secret_hash, undefined);

  const shown = await (await w.admin(`/clients/${c.client_id}`)).json();
  assert.equal(shown.client_secret, undefined, 'the secret is never shown again');
  assert.equal(shown.secret_hash, undefined, 'nor its hash');
  assert.equal(shown.client_id, c.client_id);

  const list = await (await w.admin('/partners/acme/clients')).json();
  assert.ok(list.clients.some((x) => x.client_id === c.client_id));
  assert.ok(list.clients.every((x) => x.client_secret === undefined && x.secret_hash === undefined));
});

test('client_public_and_private_key_jwt_get_no_secret', async () => {
  const pub = await (await newClient({
    name: 'Acme SPA',
    redirect_uris: ['https://app.acme.example/spa'],
    token_endpoint_auth_method: 'none',
  })).json();
  assert.equal(pub.client_secret, undefined);
  const pkjwt = await newClient({
    name: 'Acme Server',
    grant_types: ['client_credentials'],
    token_endpoint_auth_method: 'private_key_jwt',
    jwks: { keys: [{ kty: 'OKP', crv: 'Ed25519', x: '11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo' }] },
  });
  assert.equal(pkjwt.status, 201);
  assert.equal((await pkjwt.json()).client_secret, undefined);
});

test('client_redirect_uri_off_the_partner_allowlist_is_400', async () => {
  for (const uri of [
    'https://evil.example/cb',
    'https://app.acme.example.evil.example/cb',
    'https://app.acme.example:8443/cb',
    'http://app.acme.example/cb',
    'https://app.acme.example/cb#frag',
    'https://user@app.acme.example/cb',
  ]) {
    const res = await newClient({ name: 'Bad', redirect_uris: ['https://app.acme.example/ok', uri] });
    assert.equal(res.status, 400, uri);
    const err = await res.json();
    assert.equal(err.error, 'invalid_request');
    assert.equal(err.field, 'redirect_uris[1]', uri);
  }
  const { clients } = await (await w.admin('/partners/acme/clients')).json();
  assert.ok(!clients.some((c) => c.name === 'Bad'), 'nothing was written');
});

test('client_with_private_key_in_jwks_is_400', async () => {
  const res = await newClient({
    name: 'Leaky',
    grant_types: ['client_credentials'],
    token_endpoint_auth_method: 'private_key_jwt',
    jwks: { keys: [{ kty: 'OKP', crv: 'Ed25519', x: 'AAAA', d: 'c2VjcmV0' }] },
  });
  assert.equal(res.status, 400);
  assert.equal((await res.json()).field, 'jwks.keys[0]');
});

test('client_for_unknown_partner_is_404', async () => {
  const res = await newClient({ name: 'X', redirect_uris: ['https://app.acme.example/cb'] }, 'nobody');
  assert.equal(res.status, 404);
  assert.equal((await res.json()).error, 'not_found');
});

test('client_delete_and_partner_delete_cascade', async () => {
  await addPartner(w, 'temp', ['https://temp.example']);
  const a = await (await newClient({ name: 'A', redirect_uris: ['https://temp.example/cb'] }, 'temp')).json();
  const b = await (await newClient({ name: 'B', redirect_uris: ['https://temp.example/cb'] }, 'temp')).json();
  assert.equal((await w.admin(`/clients/${a.client_id}`, { method: 'DELETE' })).status, 204);
  assert.equal((await w.admin(`/clients/${a.client_id}`)).status, 404);
  assert.equal((await w.admin(`/clients/${a.client_id}`, { method: 'DELETE' })).status, 404);
  assert.equal((await w.admin('/partners/temp', { method: 'DELETE' })).status, 204);
  assert.equal((await w.admin(`/clients/${b.client_id}`)).status, 404, 'clients go with their partner');
});

test('user_crud_never_returns_the_password_or_its_hash', async () => {
  const put = await w.admin('/users/alice', {
    method: 'PUT',
    body: { password: 'correct horse battery', name: 'Alice Example', email: 'alice@school.example', roles: ['pupil'] },
  });
  assert.equal(put.status, 201);
  const text = await put.text();
  assert.doesNotMatch(text, /password|argon2|correct horse/);
  const created = JSON.parse(text);
  assert.deepEqual(
    { username: created.username, name: created.name, email: created.email, roles: created.roles },
    { username: 'alice', name: 'Alice Example', email: 'alice@school.example', roles: ['pupil'] },
  );

  const replace = await w.admin('/users/alice', { method: 'PUT', body: { name: 'Alice E.', roles: ['pupil', 'helper'] } });
  assert.equal(replace.status, 200, 'a replace may keep the password');
  const got = await w.admin('/users/alice');
  const gotText = await got.text();
  assert.doesNotMatch(gotText, /password|argon2/);
  assert.equal(JSON.parse(gotText).name, 'Alice E.');

  assert.equal((await w.admin('/users/alice', { method: 'DELETE' })).status, 204);
  assert.equal((await w.admin('/users/alice')).status, 404);
  assert.equal((await w.admin('/users/alice', { method: 'DELETE' })).status, 404);
});

test('user_invalid_input_is_400_naming_the_field', async () => {
  const cases = [
    ['bob', { name: 'Bob' }, 'password'],
    ['bob', { password: 'short', name: 'Bob' }, 'password'],
    ['bob', { password: 'long enough', name: 'Bob', email: 'nope' }, 'email'],
    ['bob', { password: 'long enough', name: 'Bob', roles: ['Admin'] }, 'roles[0]'],
    ['bob', { password: 'long enough', name: 'Bob', password_hash: '$argon2id$' }, undefined], // not named back
    ['Bob', { password: 'long enough', name: 'Bob' }, 'username'],
  ];
  for (const [username, body, field] of cases) {
    const res = await w.admin(`/users/${username}`, { method: 'PUT', body });
    assert.equal(res.status, 400, JSON.stringify(body));
    assert.equal((await res.json()).field, field, JSON.stringify(body));
  }
  assert.equal((await w.admin('/users/bob')).status, 404, 'nothing was written');
});
