// private_key_jwt client authentication (RFC 7523): the client signs an assertion with a key it
// registered; each assertion is used once. Every rule has a test that tries to break it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { startWorker, addPartner } from './harness.mjs';
import { publicJwk, generateJwk, signJwt } from '../../scripts/lib/jwk.mjs';

let w;
const keys = { EdDSA: generateJwk('EdDSA'), ES256: generateJwk('ES256'), RS256: generateJwk('RS256') };
const clients = {};

before(async () => {
  w = await startWorker();
  await addPartner(w, 'acme', ['https://app.acme.example']);
  for (const [alg, key] of Object.entries(keys)) {
    const res = await w.admin('/partners/acme/clients', {
      method: 'POST',
      body: {
        name: `Server ${alg}`,
        grant_types: ['client_credentials'],
        scopes: ['classes.read'],
        token_endpoint_auth_method: 'private_key_jwt',
        jwks: { keys: [publicJwk(key)] },
      },
    });
    assert.equal(res.status, 201);
    clients[alg] = await res.json();
  }
});
after(() => w?.stop());

const sign = signJwt;

function assertion(alg = 'EdDSA', overrides = {}, headerOverrides = {}, jwk = keys[alg]) {
  const now = Math.floor(Date.now() / 1000);
  const id = clients[alg].client_id;
  const payload = { iss: id, sub: id, aud: `${w.url}/oauth2/token`, jti: randomUUID(), iat: now, exp: now + 120, ...overrides };
  for (const [k, v] of Object.entries(payload)) if (v === undefined) delete payload[k];
  return sign(jwk, { alg, kid: jwk.kid, typ: 'JWT', ...headerOverrides }, payload);
}

function token(clientAssertion, extra = {}) {
  return fetch(`${w.url}/oauth2/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'client_credentials',
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: clientAssertion,
      ...extra,
    }),
  });
}

async function expectInvalidClient(res, what) {
  assert.equal(res.status, 401, what);
  const body = await res.json();
  assert.equal(body.error, 'invalid_client', what);
  assert.equal(body.access_token, undefined, what);
}

test('private_key_jwt_with_eddsa_es256_and_rs256_keys', async () => {
  for (const alg of ['EdDSA', 'ES256', 'RS256']) {
    const res = await token(assertion(alg));
    assert.equal(res.status, 200, alg);
    assert.equal((await res.json()).token_type, 'Bearer');
  }
  // aud may also be the issuer; client_id may be given alongside.
  assert.equal((await token(assertion('EdDSA', { aud: w.url }), { client_id: clients.EdDSA.client_id })).status, 200);
  // An Ed25519 key may sign under the algorithm's RFC 9864 name too.
  assert.equal((await token(assertion('EdDSA', {}, { alg: 'Ed25519' }))).status, 200, 'Ed25519');
});

test('private_key_jwt_assertion_replay_is_refused', async () => {
  const a = assertion('EdDSA');
  assert.equal((await token(a)).status, 200);
  await expectInvalidClient(await token(a), 'sequential replay');
});

test('private_key_jwt_parallel_replays_exactly_one_wins', async () => {
  const a = assertion('ES256');
  const results = await Promise.all(Array.from({ length: 20 }, () => token(a)));
  const statuses = results.map((r) => r.status);
  assert.equal(statuses.filter((s) => s === 200).length, 1, `statuses ${statuses}`);
  assert.equal(statuses.filter((s) => s === 401).length, 19, `statuses ${statuses}`);
});

test('private_key_jwt_refuses_bad_assertions', async () => {
  const now = Math.floor(Date.now() / 1000);
  const stranger = generateJwk('EdDSA');
  const enc = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const good = assertion('EdDSA');
  const [, payload] = good.split('.');
  const cases = {
    'wrong aud': assertion('EdDSA', { aud: 'https://evil.example/token' }),
    'wrong iss': assertion('EdDSA', { iss: clients.ES256.client_id }),
    expired: assertion('EdDSA', { iat: now - 600, exp: now - 120 }),
    'lifetime over the cap': assertion('EdDSA', { exp: now + 3600 }),
    'not yet valid': assertion('EdDSA', { nbf: now + 600 }),
    'no jti': assertion('EdDSA', { jti: undefined }),
    'signed by another key': assertion('EdDSA', {}, {}, { ...stranger, kid: keys.EdDSA.kid }),
    'unknown kid': assertion('EdDSA', {}, { kid: 'nope' }),
    'alg none': `${enc({ alg: 'none', kid: keys.EdDSA.kid })}.${payload}.`,
    'HS256': `${enc({ alg: 'HS256', kid: keys.EdDSA.kid })}.${payload}.c2ln`,
    "another client's key": assertion('EdDSA', {}, {}, keys.RS256),
    garbage: 'x.y.z',
  };
  for (const [what, a] of Object.entries(cases)) await expectInvalidClient(await token(a), what);
});

test('private_key_jwt_client_cannot_use_a_secret_instead', async () => {
  const res = await fetch(`${w.url}/oauth2/token`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`${clients.EdDSA.client_id}:guess`).toString('base64')}`,
    },
    body: 'grant_type=client_credentials',
  });
  await expectInvalidClient(res, 'basic');
});
