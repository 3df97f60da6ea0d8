// A widely used OpenID Connect client library (the Rust `openidconnect` crate, built from
// examples/oidc_client.rs) drives the whole flow from discovery: authorize, form login, token,
// ID token checked against the JWKS, userinfo, refresh, revoke. Once with RS256 ID tokens (the
// library's default) and once with EdDSA.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { startWorker, addPartner, ROOT } from './harness.mjs';

const BIN = path.join(ROOT, 'target', 'debug', 'examples', 'oidc_client');
const REDIRECT = 'http://localhost:3000/callback';
const PASSWORD = 'correct horse battery staple';
let w;

before(async () => {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: cargo build --example oidc_client (scripts/test.sh does it)`);
  w = await startWorker();
  await addPartner(w, 'acme', ['http://localhost:3000']);
  await w.admin('/users/olivia', { method: 'PUT', body: { password: PASSWORD, name: 'Olivia Library' } });
});
after(() => w?.stop());

function run(args) {
  return new Promise((resolve) => {
    const child = spawn(BIN, args);
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('close', (code) => resolve({ code, out, err }));
  });
}

for (const alg of ['RS256', 'EdDSA']) {
  test(`oidc_library_completes_the_flow_with_${alg}_id_tokens`, async () => {
    const client = await (await w.admin('/partners/acme/clients', {
      method: 'POST',
      body: { name: `Library ${alg}`, redirect_uris: [REDIRECT], scopes: ['openid', 'profile'], id_token_signed_response_alg: alg },
    })).json();
    const r = await run([w.url, client.client_id, client.client_secret, REDIRECT, 'olivia', PASSWORD, alg]);
    assert.equal(r.code, 0, `oidc_client failed: ${r.err}`);
    const summary = JSON.parse(r.out.trim());
    assert.equal(summary.ok, true);
    assert.equal(summary.alg, alg);
    assert.equal(summary.name, 'Olivia Library');
  });
}
