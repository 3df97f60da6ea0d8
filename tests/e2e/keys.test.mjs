// Our signing keys: only public parts are published, the discovery documents name only served
// endpoints, and without keys or an issuer those endpoints fail closed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, closeSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startWorker, addPartner, ROOT } from './harness.mjs';
import { decodeJwt, serviceToken, verifyJwt } from './oauth.mjs';
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
  // The Ed25519 key also under its RFC 9864 name, with a kid of its own.
  const [ed, rsa] = w.signingKeys.keys;
  assert.deepEqual(keys.map((k) => k.kid), [ed.kid, rsa.kid, `${ed.kid}.Ed25519`]);
  assert.deepEqual(keys.map((k) => k.alg), ['EdDSA', 'RS256', 'Ed25519']);
  assert.equal(keys[2].x, ed.x);
  for (const k of keys) {
    for (const m of PRIVATE) assert.equal(k[m], undefined, `${k.kid} publishes ${m}`);
    assert.equal(k.use, 'sig');
  }
  assert.equal(keys[0].x, w.signingKeys.keys[0].x);
  assert.equal(keys[1].n, w.signingKeys.keys[1].n);
});

// Every key signs in WebCrypto (issue 15), and our own tokens are verified there too, after
// their header is checked in Rust: each kind of key's signature must be what the edge, and
// node's crypto, accept.
test('tokens_signed_in_webcrypto_verify_at_the_edge_and_with_node_for_each_key_type', async () => {
  for (const alg of ['ES256', 'EdDSA']) {
    const signer = generateJwk(alg);
    const ws = await startWorker({ signingKeys: { keys: [signer] } });
    try {
      await addPartner(ws, 'acme', ['https://app.acme.example']);
      const made = await ws.admin('/partners/acme/clients', {
        method: 'POST',
        body: { name: 'Service', grant_types: ['client_credentials'], scopes: ['api'], id_token_signed_response_alg: alg },
      });
      const client = await made.json();
      assert.equal(made.status, 201, JSON.stringify(client));
      const token = await serviceToken(ws, client, 'api');
      const { header } = decodeJwt(token);
      assert.deepEqual(header, { alg, kid: signer.kid, typ: 'at+jwt' });
      const jwks = await (await ws.fetch('/.well-known/jwks.json')).json();
      assert.equal(verifyJwt(token, jwks).client_id, client.client_id, `${alg}: node verifies it`);
      const me = await ws.fetch('/edge/whoami', { headers: { authorization: `Bearer ${token}` } });
      assert.equal(me.status, 200, `${alg}: the edge verifies it`);
      assert.equal((await me.json()).client_id, client.client_id);
      // The same token with its signature's first byte changed is refused.
      const [h, p, sig] = token.split('.');
      const bytes = Buffer.from(sig, 'base64url');
      bytes[0] ^= 1;
      const forged = `${h}.${p}.${bytes.toString('base64url')}`;
      const refused = await ws.fetch('/edge/whoami', { headers: { authorization: `Bearer ${forged}` } });
      assert.equal(refused.status, 401, `${alg}: a changed signature`);
      assert.equal((await refused.json()).error, 'invalid_token');
    } finally {
      await ws.stop();
    }
  }
});

test('discovery_documents_name_the_issuer_and_served_endpoints', async () => {
  for (const p of ['/.well-known/openid-configuration', '/.well-known/oauth-authorization-server']) {
    const res = await w.fetch(p);
    assert.equal(res.status, 200, p);
    const doc = await res.json();
    assert.equal(doc.issuer, w.url);
    assert.equal(doc.jwks_uri, `${w.url}/.well-known/jwks.json`);
    assert.deepEqual(doc.id_token_signing_alg_values_supported, ['EdDSA', 'RS256', 'Ed25519']);
    // What a client relies on to keep itself safe (RFC 9700 §2.1.1, RFC 9207).
    assert.deepEqual(doc.code_challenge_methods_supported, ['S256']);
    assert.equal(doc.authorization_response_iss_parameter_supported, true);
    assert.deepEqual(doc.response_types_supported, ['code']);
    assert.deepEqual(doc.response_modes_supported, ['query', 'form_post']);
    assert.deepEqual(doc.subject_types_supported, ['pairwise']);
    assert.equal(doc.request_parameter_supported, true);
    assert.equal(doc.request_uri_parameter_supported, true);
    assert.equal(doc.require_request_uri_registration, true);
    assert.deepEqual(doc.request_object_signing_alg_values_supported, ['none', 'RS256', 'ES256', 'EdDSA', 'Ed25519']);
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

/** Runs scripts/keys in `dir`; `stdout` may be a file descriptor to write to. */
function keys(dir, args, stdout = 'pipe') {
  const r = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'keys'), ...args], {
    cwd: dir,
    env: { PATH: process.env.PATH },
    encoding: 'utf8',
    stdio: ['ignore', stdout, 'pipe'],
    timeout: 20_000,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}
const mode = (f) => statSync(f).mode & 0o777;
const withDir = (fn) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'edgeward-keyset-'));
  try {
    return fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
};

test('keys_cli_writes_private_keys_with_mode_0600', () =>
  withDir((dir) => {
    const file = path.join(dir, 'keys.json');
    let r = keys(dir, ['init', file]);
    assert.equal(r.code, 0, r.err);
    assert.equal(mode(file), 0o600);
    // init never overwrites a key set.
    const original = readFileSync(file, 'utf8');
    r = keys(dir, ['init', file]);
    assert.equal(r.code, 1);
    assert.equal(r.err, `error: ${file} exists: nothing was written (init never overwrites a key set)\n`);
    assert.equal(readFileSync(file, 'utf8'), original);

    // A file that was readable by others is narrowed when keys are written to it.
    chmodSync(file, 0o644);
    r = keys(dir, ['add', file, 'ES256']);
    assert.equal(r.code, 0, r.err);
    assert.equal(mode(file), 0o600);
    assert.equal(JSON.parse(readFileSync(file, 'utf8')).keys.length, 3);

    // Standard output redirected to a file (`init > keys.json`, `generate > key.json`).
    for (const args of [['init'], ['generate', 'EdDSA']]) {
      const out = path.join(dir, `${args[0]}.json`);
      writeFileSync(out, '', { mode: 0o644 });
      chmodSync(out, 0o644);
      const fd = openSync(out, 'w');
      try {
        r = keys(dir, args, fd);
      } finally {
        closeSync(fd);
      }
      assert.equal(r.code, 0, r.err);
      assert.equal(mode(out), 0o600, args[0]);
      assert.ok(readFileSync(out, 'utf8').includes('"d"'), 'the private key is in the file');
    }
  }));

test('keys_cli_never_retires_the_last_or_current_access_token_signer', () =>
  withDir((dir) => {
    const file = path.join(dir, 'keys.json');
    assert.equal(keys(dir, ['init', file]).code, 0);
    const [ed, rsa] = JSON.parse(readFileSync(file, 'utf8')).keys;
    const original = readFileSync(file, 'utf8');
    let r = keys(dir, ['retire', file, ed.kid]);
    assert.equal(r.code, 1);
    assert.equal(r.err, `error: cannot retire ${ed.kid}: it is the last key that can sign access tokens (add an EdDSA or ES256 key first)\n`);
    assert.equal(readFileSync(file, 'utf8'), original, 'the file is left as it was');

    // With a second EdDSA key published but not promoted, the signing key still cannot go.
    assert.equal(keys(dir, ['add', file, 'EdDSA']).code, 0);
    const added = JSON.parse(readFileSync(file, 'utf8')).keys[2];
    const published = readFileSync(file, 'utf8');
    r = keys(dir, ['retire', file, ed.kid]);
    assert.equal(r.code, 1);
    assert.match(r.err, new RegExp(`^error: cannot retire ${ed.kid}: it signs access tokens now \\(promote another`));
    assert.equal(readFileSync(file, 'utf8'), published);

    // The rotation as documented: promote, then retire the old key.
    assert.equal(keys(dir, ['promote', file, added.kid]).code, 0);
    r = keys(dir, ['retire', file, ed.kid]);
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(JSON.parse(readFileSync(file, 'utf8')).keys.map((k) => k.kid), [added.kid, rsa.kid]);
    r = keys(dir, ['retire', file, added.kid]);
    assert.equal(r.code, 1, 'the new key is the last signer now');
    assert.equal(mode(file), 0o600);
  }));

test('keys_cli_missing_or_broken_key_file_is_a_one_line_error', () =>
  withDir((dir) => {
    for (const cmd of ['list', 'public', 'add', 'promote', 'retire']) {
      const r = keys(dir, [cmd, 'missing.json', 'kid']);
      assert.equal(r.code, 2, cmd);
      assert.equal(r.err, 'error: missing.json: cannot read the key set (no such file)\n', cmd);
    }
    writeFileSync(path.join(dir, 'broken.json'), '{"keys": [');
    const r = keys(dir, ['list', 'broken.json']);
    assert.equal(r.code, 2);
    assert.equal(r.err, 'error: broken.json: not valid JSON\n');
  }));

test('keys_cli_every_command_answers_help', () =>
  withDir((dir) => {
    for (const cmd of ['init', 'generate', 'list', 'public', 'add', 'promote', 'retire']) {
      for (const flag of ['--help', '-h']) {
        const r = keys(dir, [cmd, flag]);
        assert.equal(r.code, 0, `${cmd} ${flag}`);
        assert.equal(r.err, '');
        assert.ok(r.out.startsWith(`usage: scripts/keys ${cmd}`), r.out);
      }
    }
    const r = keys(dir, ['--help']);
    assert.equal(r.code, 0);
    assert.match(r.out, /^usage: scripts\/keys <command>/);
  }));
