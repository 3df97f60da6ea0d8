// Our signing keys: only public parts are published, the discovery documents name only served
// endpoints, and without keys or an issuer those endpoints fail closed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker } from './harness.mjs';
import { generateJwk } from '../../scripts/lib/jwk.mjs';

let w;
before(async () => {
  w = await startWorker();
});
after(() => w?.stop());

const PRIVATE = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k'];

test('jwks_publishes_every_key_and_no_private_part', async () => {
  const res = await w.fetch('/.well-known/jwks.json');
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('cache-control'), 'public, max-age=300');
  const { keys } = await res.json();
  assert.deepEqual(keys.map((k) => k.kid), w.signingKeys.keys.map((k) => k.kid));
  assert.deepEqual(keys.map((k) => k.alg), ['EdDSA', 'RS256']);
  for (const k of keys) {
    for (const m of PRIVATE) assert.equal(k[m], undefined, `${k.kid} publishes ${m}`);
    assert.equal(k.use, 'sig');
  }
  assert.equal(keys[0].x, w.signingKeys.keys[0].x);
  assert.equal(keys[1].n, w.signingKeys.keys[1].n);
});

test('discovery_documents_name_the_issuer_and_served_endpoints', async () => {
  for (const p of ['/.well-known/openid-configuration', '/.well-known/oauth-authorization-server']) {
    const res = await w.fetch(p);
    assert.equal(res.status, 200, p);
    const doc = await res.json();
    assert.equal(doc.issuer, w.url);
    assert.equal(doc.jwks_uri, `${w.url}/.well-known/jwks.json`);
    assert.deepEqual(doc.id_token_signing_alg_values_supported, ['EdDSA', 'RS256']);
    // What a client relies on to keep itself safe (RFC 9700 §2.1.1, RFC 9207).
    assert.deepEqual(doc.code_challenge_methods_supported, ['S256']);
    assert.equal(doc.authorization_response_iss_parameter_supported, true);
    assert.deepEqual(doc.response_types_supported, ['code']);
    assert.deepEqual(doc.response_modes_supported, ['query']);
    assert.deepEqual(doc.subject_types_supported, ['pairwise']);
    assert.equal(doc.request_parameter_supported, false);
    assert.equal(doc.request_uri_parameter_supported, false);
    assert.ok(!doc.grant_types_supported.includes('implicit') && !doc.grant_types_supported.includes('password'));
    for (const [name, value] of Object.entries(doc)) {
      if (!name.endsWith('_endpoint') && name !== 'jwks_uri') continue;
      const served = await w.fetch(value.slice(w.url.length));
      assert.notEqual(served.status, 404, `${name} is served`);
    }
  }
});

test('jwks_and_discovery_fail_closed_without_keys_or_issuer', async () => {
  const noKeys = await startWorker({ signingKeys: null });
  const publicOnly = generateJwk('EdDSA');
  delete publicOnly.d;
  const badKeys = await startWorker({ signingKeys: { keys: [publicOnly] } });
  const noIssuer = await startWorker({ vars: { ISSUER: '' } });
  try {
    for (const [worker, p] of [
      [noKeys, '/.well-known/jwks.json'],
      [noKeys, '/.well-known/openid-configuration'],
      [badKeys, '/.well-known/jwks.json'],
      [noIssuer, '/.well-known/openid-configuration'],
    ]) {
      const res = await worker.fetch(p);
      assert.equal(res.status, 503, p);
      const body = await res.text();
      assert.equal(JSON.parse(body).error, 'temporarily_unavailable');
      assert.doesNotMatch(body, /"d"|kty/, 'no key material in the error');
    }
  } finally {
    await Promise.all([noKeys.stop(), badKeys.stop(), noIssuer.stop()]);
  }
});
