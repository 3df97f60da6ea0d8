// The API gateway: what reaches the origin, and what never does. The origin stand-in records
// every request it receives, so each refusal is also checked from the origin's side.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { createHash, randomBytes } from 'node:crypto';
import { startWorker, addPartner, startOrigin, logOf, sleep } from './harness.mjs';
import { basicAuth, browserFlow, decodeJwt, forgeAccessTokens, pkce, serviceToken as issueServiceToken, verifyJwt } from './oauth.mjs';

const ACME = 'https://app.acme.example';
const BETA = 'https://app.beta.example';
const SCOPES = {
  '/api': 'api',
  '/api/v1/classes': 'classes.read',
  'POST /api/v1/classes': 'classes.write',
  '/api/v1/me': null,
};
const MAX_BODY = 4 * 1024 * 1024;
const PASSWORD = 'correct horse battery staple';

let w;
let origin;
let acme; // confidential client of acme, client_credentials + code flow
let beta; // client of beta
let jwks;

before(async () => {
  origin = await startOrigin({
    respond(req, res, record) {
      if (req.url.startsWith('/api/redirect')) {
        res.writeHead(302, { location: 'https://elsewhere.example/' });
        return res.end();
      }
      if (req.url.startsWith('/api/cookies')) {
        res.setHeader('set-cookie', [
          'theme=dark; Path=/',
          '__Host-edgeward_session=planted.x; Path=/; Secure; HttpOnly',
          '__Host-edgeward_csrf=planted; Path=/; Secure',
          'edgeward_device=planted; Path=/',
        ]);
        res.writeHead(200, { 'content-type': 'application/json' });
        return res.end('{}');
      }
      if (req.url.startsWith('/api/vary')) {
        res.writeHead(200, { 'content-type': 'application/json', vary: 'Accept-Encoding, Accept-Language' });
        return res.end('{}');
      }
      if (req.url.startsWith('/api/hop')) {
        res.writeHead(200, { connection: 'x-origin-hop', 'x-origin-hop': 'secret', 'x-origin-kept': 'yes' });
        return res.end('hop');
      }
      res.writeHead(200, { 'content-type': 'application/json', 'x-origin': 'yes' });
      res.end(JSON.stringify({ url: req.url, bodyLength: record.bodyLength, bodySha256: record.bodySha256 }));
    },
  });
  w = await startWorker({
    vars: {
      ORIGIN_URL: origin.url,
      API_SCOPES: JSON.stringify(SCOPES),
      API_MAX_BODY_BYTES: String(MAX_BODY),
      GATE_CACHE_TTL_SECONDS: '1',
    },
  });
  await addPartner(w, 'acme', [ACME]);
  await addPartner(w, 'beta', [BETA]);
  acme = await newClient('acme', ['openid', 'api', 'classes.read', 'classes.write']);
  beta = await newClient('beta', ['api', 'classes.read']);
  await w.admin('/users/dora', { method: 'PUT', body: { password: PASSWORD, name: 'Dora Pupil' } });
  jwks = await (await w.fetch('/.well-known/jwks.json')).json();
});
after(async () => {
  await w?.stop();
  await origin?.stop();
});

async function newClient(partner, scopes, site = `https://app.${partner}.example`) {
  const res = await w.admin(`/partners/${partner}/clients`, {
    method: 'POST',
    body: {
      name: `${partner} app`,
      redirect_uris: [`${site}/cb`],
      grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
      scopes,
    },
  });
  assert.equal(res.status, 201);
  return res.json();
}

const serviceToken = (client, scope) => issueServiceToken(w, client, scope);

async function userTokens(scope) {
  const { verifier, challenge } = pkce();
  const { callback } = await browserFlow(w, { client: acme, username: 'dora', password: PASSWORD, challenge, scope });
  const res = await w.fetch('/oauth2/token', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(acme.client_id, acme.client_secret) },
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code: callback.searchParams.get('code'),
      redirect_uri: acme.redirect_uris[0],
      code_verifier: verifier,
    }).toString(),
  });
  assert.equal(res.status, 200);
  return res.json();
}

/** A client-credentials token of a new acme client on another Worker `w2`. */
async function tokenOnFreshWorker(w2, scopes) {
  await addPartner(w2, 'acme', [ACME]);
  const c = await (await w2.admin('/partners/acme/clients', {
    method: 'POST',
    body: { name: 'a', redirect_uris: [`${ACME}/cb`], grant_types: ['client_credentials'], scopes },
  })).json();
  return issueServiceToken(w2, c);
}

const call = (path, token, init = {}) =>
  w.fetch(path, { ...init, headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(init.headers ?? {}) } });

/** Runs `fn` and asserts that nothing reached the origin meanwhile. */
async function nothingReachesOrigin(fn) {
  const before = origin.received.length;
  await fn();
  assert.equal(origin.received.length, before, 'a refused request reached the origin');
}

async function assertError(res, status, error, message) {
  assert.equal(res.status, status, message);
  const body = await res.json();
  assert.equal(body.error, error, message);
  return body;
}

test('gateway_forwards_method_path_query_body_and_signed_identity', async () => {
  const token = await serviceToken(acme, 'api classes.read classes.write');
  const claims = decodeJwt(token).payload;
  const body = JSON.stringify({ name: 'Year 5 maths' });
  const res = await call('/api/v1/classes/7/lessons?from=2026-11-01&sort=asc', token, {
    method: 'POST',
    body,
    headers: { 'content-type': 'application/json', 'x-custom': 'kept', cookie: '__Host-edgeward_session=s3cret' },
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('x-origin'), 'yes');
  const got = origin.received.at(-1);
  assert.equal(got.method, 'POST');
  assert.equal(got.url, '/api/v1/classes/7/lessons?from=2026-11-01&sort=asc');
  assert.equal(got.bodyLength, Buffer.byteLength(body));
  assert.equal(got.headers['content-type'], 'application/json');
  assert.equal(got.headers['x-custom'], 'kept');
  assert.equal(got.headers.authorization, undefined, 'the bearer token stays at the edge');
  assert.equal(got.headers.cookie, undefined, 'the edge session cookie stays at the edge');
  assert.equal(got.headers['x-edgeward-sub'], claims.sub);
  assert.equal(got.headers['x-edgeward-client'], acme.client_id);
  assert.equal(got.headers['x-edgeward-partner'], 'acme');
  assert.equal(got.headers['x-edgeward-scope'], 'api classes.read classes.write');
  const identity = got.headers['x-edgeward-identity'];
  const { header } = decodeJwt(identity);
  assert.equal(header.typ, 'edgeward-identity+jwt');
  const id = verifyJwt(identity, jwks);
  assert.equal(id.iss, w.url);
  assert.equal(id.aud, origin.url);
  assert.equal(id.sub, claims.sub);
  assert.equal(id.partner_id, 'acme');
  assert.equal(id.client_id, acme.client_id);
  assert.equal(id.ati, claims.jti);
  assert.ok(id.exp - id.iat <= 60 && id.exp > Date.now() / 1000);
});

test('gateway_spoofed_identity_headers_never_reach_the_origin', async () => {
  const token = await serviceToken(beta, 'api');
  const res = await call('/api/v1/reports', token, {
    headers: {
      'x-edgeward-sub': 'admin',
      'X-Edgeward-Partner': 'acme',
      'x-edgeward-client': 'acme-client',
      'x-edgeward-scope': 'classes.write admin',
      'x-edgeward-identity': 'eyJhbGciOiJub25lIn0.e30.',
      'x-edgeward-role': 'superuser',
    },
  });
  assert.equal(res.status, 200);
  const got = origin.received.at(-1);
  assert.equal(got.headers['x-edgeward-partner'], 'beta');
  assert.equal(got.headers['x-edgeward-client'], beta.client_id);
  assert.equal(got.headers['x-edgeward-scope'], 'api');
  assert.notEqual(got.headers['x-edgeward-sub'], 'admin');
  assert.equal(got.headers['x-edgeward-role'], undefined);
  assert.equal(verifyJwt(got.headers['x-edgeward-identity'], jwks).partner_id, 'beta');
});

test('gateway_missing_token_is_401_with_bearer_challenge_and_not_forwarded', async () => {
  await nothingReachesOrigin(async () => {
    const res = await call('/api/v1/classes', null);
    assert.equal(res.headers.get('www-authenticate'), 'Bearer realm="edgeward"');
    await assertError(res, 401, 'unauthorized', 'no token');
    const q = await call(`/api/v1/classes?access_token=${await serviceToken(acme, 'api')}`, null);
    await assertError(q, 401, 'unauthorized', 'a token in the query string does not count');
    const basic = await w.fetch('/api/v1/classes', { headers: { authorization: basicAuth(acme.client_id, acme.client_secret) } });
    await assertError(basic, 401, 'invalid_token', 'client credentials are not a bearer token');
  });
});

test('gateway_forged_and_expired_tokens_never_reach_the_origin', async () => {
  const real = await serviceToken(acme, 'api classes.read');
  const id = await userTokens('openid');
  const forged = { ...forgeAccessTokens(w, real), 'an ID token': id.id_token, 'a refresh token': id.refresh_token };
  await nothingReachesOrigin(async () => {
    for (const [name, token] of Object.entries(forged)) {
      const res = await call('/api/v1/classes', token);
      assert.equal(res.headers.get('www-authenticate'), 'Bearer realm="edgeward", error="invalid_token"', name);
      await assertError(res, 401, 'invalid_token', name);
    }
  });
});

test('gateway_a_token_with_an_admitted_tokens_signature_is_not_admitted_from_its_cache', async () => {
  // The isolate caches an admitted token under the end of its signature and compares the whole
  // token on a hit: the same signature under another payload must be checked, and refused.
  const real = await serviceToken(acme, 'api classes.read');
  assert.equal((await call('/api/v1/classes', real)).status, 200, 'the real token is admitted and cached');
  const [h, p, sig] = real.split('.');
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString());
  const widened = Buffer.from(JSON.stringify({ ...claims, scope: `${claims.scope} admin` })).toString('base64url');
  const other = real[10] === 'A' ? 'B' : 'A';
  const sameTail = [`${h}.${widened}.${sig}`, `x${real}`, `${real.slice(0, 10)}${other}${real.slice(11)}`];
  await nothingReachesOrigin(async () => {
    for (const token of sameTail) {
      const res = await call('/api/v1/classes', token);
      await assertError(res, 401, 'invalid_token', 'the signature of an admitted token, under another token');
    }
  });
  assert.equal((await call('/api/v1/classes', real)).status, 200, 'the real token is still admitted');
});

test('gateway_revoked_client_credentials_token_never_reaches_the_origin', async () => {
  const token = await serviceToken(acme, 'api');
  assert.equal((await call('/api/v1/x', token)).status, 200, 'admitted and cached before the revocation');
  const rev = await w.fetch('/oauth2/revoke', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(acme.client_id, acme.client_secret) },
    body: new URLSearchParams({ token }).toString(),
  });
  assert.equal(rev.status, 200);
  await nothingReachesOrigin(async () => {
    const body = await assertError(await call('/api/v1/x', token), 401, 'invalid_token', 'revoked');
    assert.match(body.error_description, /revoked/);
  });
  const intro = await w.fetch('/oauth2/introspect', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(acme.client_id, acme.client_secret) },
    body: new URLSearchParams({ token }).toString(),
  });
  assert.deepEqual(await intro.json(), { active: false }, 'introspection agrees');
});

test('gateway_revoked_grant_stops_its_access_tokens', async () => {
  const t = await userTokens('openid api');
  assert.equal((await call('/api/v1/x', t.access_token)).status, 200);
  // Revoking the refresh token ends the grant, and with it the grant's access tokens.
  const rev = await w.fetch('/oauth2/revoke', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(acme.client_id, acme.client_secret) },
    body: new URLSearchParams({ token: t.refresh_token }).toString(),
  });
  assert.equal(rev.status, 200);
  await nothingReachesOrigin(async () => {
    await assertError(await call('/api/v1/x', t.access_token), 401, 'invalid_token', 'grant revoked');
  });
});

test('gateway_refresh_reuse_revokes_the_grant_at_the_gateway_within_the_cache_lifetime', async () => {
  const t = await userTokens('openid api');
  assert.equal((await call('/api/v1/x', t.access_token)).status, 200);
  const refresh = (rt) =>
    w.fetch('/oauth2/token', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(acme.client_id, acme.client_secret) },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: rt }).toString(),
    });
  const first = await refresh(t.refresh_token);
  assert.equal(first.status, 200);
  const rotated = await first.json();
  await assertError(await refresh(t.refresh_token), 400, 'invalid_grant', 'reuse of the old refresh token');
  // The reuse was detected inside the grant's Durable Object; the gateway learns it through KV
  // once its cache entry (GATE_CACHE_TTL_SECONDS=1 here) expires.
  await sleep(1200);
  await nothingReachesOrigin(async () => {
    await assertError(await call('/api/v1/x', t.access_token), 401, 'invalid_token', 'old access token');
    await assertError(await call('/api/v1/x', rotated.access_token), 401, 'invalid_token', 'new access token');
  });
});

test('gateway_enforces_the_scope_of_each_route', async () => {
  const reader = await serviceToken(acme, 'classes.read');
  assert.equal((await call('/api/v1/classes/7', reader)).status, 200, 'GET needs classes.read');
  assert.equal((await call('/api/v1/classes/7', reader, { method: 'HEAD' })).status, 200, 'HEAD as GET');
  assert.equal((await call('/api/v1/me', reader)).status, 200, 'null: any valid token');
  await nothingReachesOrigin(async () => {
    const post = await call('/api/v1/classes/7', reader, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
    assert.equal(post.headers.get('www-authenticate'), 'Bearer realm="edgeward", error="insufficient_scope", scope="classes.write"');
    await assertError(post, 403, 'insufficient_scope', 'POST needs classes.write');
    await assertError(await call('/api/v1/reports', reader), 403, 'insufficient_scope', 'the /api catch-all needs api');
    await assertError(await call('/api/v1/classesX', reader), 403, 'insufficient_scope', 'prefixes match whole segments');
    // Another spelling of the same route gets the same rule (an origin may fold case).
    const upper = await call('/api/v1/Classes/7', reader, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
    assert.match(upper.headers.get('www-authenticate'), /scope="classes.write"/);
    await assertError(upper, 403, 'insufficient_scope', 'case does not change the rule');
  });
});

test('gateway_route_without_a_scope_rule_is_404_and_only_after_the_token', async () => {
  const w2 = await startWorker({ vars: { ORIGIN_URL: origin.url, API_SCOPES: '{"/api/v1/classes": "classes.read"}' } });
  try {
    const tok = { access_token: await tokenOnFreshWorker(w2, ['classes.read']) };
    await nothingReachesOrigin(async () => {
      await assertError(await w2.fetch('/api/v1/secret'), 401, 'unauthorized', 'no token: no hint that the route is unknown');
      await assertError(
        await w2.fetch('/api/v1/secret', { headers: { authorization: `Bearer ${tok.access_token}` } }),
        404,
        'not_found',
        'unmapped route',
      );
    });
    assert.equal((await w2.fetch('/api/v1/classes', { headers: { authorization: `Bearer ${tok.access_token}` } })).status, 200);
  } finally {
    await w2.stop();
  }
});

test('gateway_ambiguous_paths_are_400_and_not_forwarded', async () => {
  const token = await serviceToken(acme, 'classes.read');
  await nothingReachesOrigin(async () => {
    // Sent verbatim (fetch() would resolve the dot segments before sending).
    for (const p of ['/api/v1/classes%2F..%2Fadmin', '/api/v1/classes%5cadmin', '/api/v1/cl%61sses', '/api/v1/classes;jsessionid=1', '/api/..;/admin', '/api/v1/classes/%252e', '/api//v1/classes']) {
      const res = await rawRequest(p, { authorization: `Bearer ${token}` });
      assert.equal(res.status, 400, p);
      assert.equal(JSON.parse(res.body).error, 'invalid_request', p);
    }
    // Dot segments, even percent-encoded, are resolved by the runtime before the Worker sees
    // the URL: the scope is checked on the path the origin would get (/api/v1/admin).
    const dots = await rawRequest('/api/v1/classes/%2e%2e/admin', { authorization: `Bearer ${token}` });
    assert.equal(dots.status, 403, 'checked as /api/v1/admin, which needs api');
    assert.equal(JSON.parse(dots.body).error, 'insufficient_scope');
  });
});

test('gateway_browser_origin_must_belong_to_the_tokens_partner', async () => {
  const acmeToken = await serviceToken(acme, 'api');
  const ok = await call('/api/v1/x', acmeToken, { headers: { origin: ACME } });
  assert.equal(ok.status, 200);
  assert.equal(ok.headers.get('access-control-allow-origin'), ACME);
  await nothingReachesOrigin(async () => {
    const cross = await call('/api/v1/x', acmeToken, { headers: { origin: BETA } });
    assert.equal(cross.headers.get('access-control-allow-origin'), BETA, 'the refusal is readable by the page');
    await assertError(cross, 403, 'origin_not_allowed', "beta's page with acme's token");
    const evil = await call('/api/v1/x', acmeToken, { headers: { origin: 'https://evil.example' } });
    assert.equal(evil.headers.get('access-control-allow-origin'), null);
    await assertError(evil, 403, 'origin_not_allowed', 'unknown origin');
  });
  // A page of the partner without a token learns it needs one (and can read that answer).
  const noToken = await call('/api/v1/x', null, { headers: { origin: ACME } });
  assert.equal(noToken.headers.get('access-control-allow-origin'), ACME);
  await assertError(noToken, 401, 'unauthorized', 'no token');
  assert.equal((await logOf(w, noToken)).partner, 'acme', 'the log names the partner the gate admitted');
});

test('gateway_token_of_a_suspended_partner_is_refused', async () => {
  await addPartner(w, 'paused', ['https://paused.example']);
  const c = await newClient('paused', ['api'], 'https://paused.example');
  const token = await serviceToken(c, 'api');
  assert.equal((await call('/api/v1/x', token)).status, 200);
  await addPartner(w, 'paused', ['https://paused.example'], 'suspended');
  await sleep(1200); // GATE_CACHE_TTL_SECONDS=1
  await nothingReachesOrigin(async () => {
    await assertError(await call('/api/v1/x', token), 403, 'partner_suspended', 'suspended partner');
  });
});

test('gateway_large_body_streams_through_whole', async () => {
  const token = await serviceToken(acme, 'api');
  const body = randomBytes(MAX_BODY);
  const res = await call('/api/v1/upload', token, { method: 'PUT', body, headers: { 'content-type': 'application/octet-stream' } });
  assert.equal(res.status, 200);
  const echoed = await res.json();
  assert.equal(echoed.bodyLength, MAX_BODY);
  assert.equal(echoed.bodySha256, createHash('sha256').update(body).digest('hex'));
});

test('gateway_body_over_the_limit_is_413_and_not_forwarded', async () => {
  const token = await serviceToken(acme, 'api');
  await nothingReachesOrigin(async () => {
    // Only the headers are sent: the Worker must refuse on the declared length alone, before
    // reading (or forwarding) a byte of the body.
    const res = await headersOnly('/api/v1/upload', 'PUT', { authorization: `Bearer ${token}`, 'content-length': String(MAX_BODY + 1) });
    assert.equal(res.status, 413, 'one byte over');
    assert.equal(JSON.parse(res.body).error, 'payload_too_large');
  });
});

/** Sends a request's headers only and resolves with the answer (the body is never sent). */
function headersOnly(path, method, headers) {
  return new Promise((resolve, reject) => {
    const u = new URL(w.url + path);
    const req = http.request({ host: u.hostname, port: u.port, path, method, headers, agent: false }, (res) => {
      const parts = [];
      res.on('data', (c) => parts.push(c));
      res.on('end', () => {
        resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(parts).toString() });
        req.destroy();
      });
    });
    req.on('error', (e) => (req.destroyed ? undefined : reject(e)));
    req.flushHeaders();
  });
}

/** A raw HTTP/1.1 request, for headers fetch() will not send (Connection, chunked bodies). */
function rawRequest(path, headers, chunks) {
  return new Promise((resolve, reject) => {
    const u = new URL(w.url + path);
    const req = http.request({ host: u.hostname, port: u.port, path, method: chunks ? 'POST' : 'GET', headers, agent: false }, (res) => {
      const parts = [];
      res.on('data', (c) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(parts).toString() }));
    });
    req.on('error', reject);
    for (const c of chunks ?? []) req.write(c);
    req.end();
  });
}

test('gateway_body_without_declared_length_is_411', async () => {
  const token = await serviceToken(acme, 'api');
  await nothingReachesOrigin(async () => {
    const res = await rawRequest('/api/v1/upload', { authorization: `Bearer ${token}`, 'transfer-encoding': 'chunked' }, ['abc', 'def']);
    assert.equal(res.status, 411);
    assert.equal(JSON.parse(res.body).error, 'length_required');
  });
});

test('gateway_hop_by_hop_headers_are_not_forwarded_either_way', async () => {
  const token = await serviceToken(acme, 'api');
  const res = await rawRequest('/api/hop', { authorization: `Bearer ${token}`, connection: 'keep-alive, x-hop', 'x-hop': 'secret', 'x-end': 'kept' });
  assert.equal(res.status, 200);
  const got = origin.received.at(-1);
  assert.equal(got.headers['x-hop'], undefined, 'a header named by Connection is hop-by-hop');
  assert.equal(got.headers['x-end'], 'kept');
  assert.equal(res.headers['x-origin-hop'], undefined, "the origin's Connection-named header stays behind");
  assert.equal(res.headers['x-origin-kept'], 'yes');
});

test('gateway_origin_redirects_are_passed_back_not_followed', async () => {
  const token = await serviceToken(acme, 'api');
  const before = origin.received.length;
  const res = await call('/api/redirect', token);
  assert.equal(res.status, 302);
  assert.equal(res.headers.get('location'), 'https://elsewhere.example/');
  assert.equal(origin.received.length, before + 1);
});

test('gateway_origin_down_is_502_json', async () => {
  const dead = await startOrigin();
  const deadUrl = dead.url;
  await dead.stop();
  const w2 = await startWorker({ vars: { ORIGIN_URL: deadUrl, API_SCOPES: '{"/api": null}' } });
  try {
    const tok = { access_token: await tokenOnFreshWorker(w2, ['api']) };
    const res = await w2.fetch('/api/v1/x', { headers: { authorization: `Bearer ${tok.access_token}` } });
    assert.equal(res.headers.get('content-type'), 'application/json');
    const body = await assertError(res, 502, 'bad_gateway', 'origin down');
    assert.doesNotMatch(JSON.stringify(body), /127\.0\.0\.1/, 'the origin address is not disclosed');
  } finally {
    await w2.stop();
  }
});

test('gateway_without_origin_url_is_503_once_the_caller_passed', async () => {
  const w2 = await startWorker();
  try {
    const tok = { access_token: await tokenOnFreshWorker(w2, ['api']) };
    await assertError(await w2.fetch('/api/v1/x'), 401, 'unauthorized', 'the checks come first');
    const res = await w2.fetch('/api/v1/x', { headers: { authorization: `Bearer ${tok.access_token}` } });
    await assertError(res, 503, 'temporarily_unavailable', 'ORIGIN_URL unset');
  } finally {
    await w2.stop();
  }
});

test('whoami_answers_at_the_edge_after_the_same_checks', async () => {
  const token = await serviceToken(beta, 'api classes.read');
  await nothingReachesOrigin(async () => {
    const res = await w.fetch('/edge/whoami', { headers: { authorization: `Bearer ${token}` } });
    assert.equal(res.status, 200);
    const me = await res.json();
    assert.equal(me.partner_id, 'beta');
    assert.equal(me.client_id, beta.client_id);
    assert.equal(me.scope, 'api classes.read');
    assert.equal(me.sub, decodeJwt(token).payload.sub);
    await assertError(await w.fetch('/edge/whoami'), 401, 'unauthorized', 'no token');
    const cross = await w.fetch('/edge/whoami', { headers: { authorization: `Bearer ${token}`, origin: ACME } });
    await assertError(cross, 403, 'origin_not_allowed', "acme's page with beta's token");
  });
});

test('form_body_without_declared_length_is_cut_off_at_the_limit', async () => {
  // A chunked token request of 20 KiB: cut off at 16 KiB, never read whole.
  const chunk = 'x'.repeat(1024);
  const res = await rawRequest(
    '/oauth2/token',
    { 'content-type': 'application/x-www-form-urlencoded', 'transfer-encoding': 'chunked', authorization: basicAuth(acme.client_id, acme.client_secret) },
    ['grant_type=client_credentials&pad=', ...Array(20).fill(chunk)],
  );
  // The token endpoint answers in OAuth's terms (RFC 6749 §5.2): 400 invalid_request.
  assert.equal(res.status, 400, res.body);
  const body = JSON.parse(res.body);
  assert.equal(body.error, 'invalid_request');
  assert.match(body.error_description, /too large/);
});

test('gateway_strips_every_spelling_of_identity_override_and_address_headers', async () => {
  const token = await serviceToken(beta, 'api');
  const spoofed = {
    // Our identity headers, in the spellings an origin may read as ours (CGI: HTTP_X_EDGEWARD_SUB).
    X_Edgeward_Sub: 'admin',
    'x-edgeward_sub': 'admin',
    'X-EDGEWARD_PARTNER': 'acme',
    x_edgeward_scope: 'classes.write admin',
    X_Edgeward_Identity: 'eyJhbGciOiJub25lIn0.e30.',
    // Another method or URL than the one the gateway checked.
    'X-HTTP-Method-Override': 'DELETE',
    X_HTTP_Method_Override: 'DELETE',
    'X-HTTP-Method': 'DELETE',
    'X-Method-Override': 'DELETE',
    'X-Original-URL': '/api/v1/classes',
    X_Original_URL: '/api/v1/classes',
    'X-Rewrite-URL': '/api/v1/classes',
    'X-Original-Method': 'DELETE',
    'X-Forwarded-Prefix': '/admin',
    X_Forwarded_Prefix: '/admin',
    'X-Override-URL': '/api/v1/classes',
    // The client's address and the forwarding path.
    'X-Forwarded-For': '10.0.0.1',
    X_Forwarded_For: '10.0.0.1',
    'X-Forwarded-Host': 'admin.internal',
    'X-Forwarded-Proto': 'http',
    Forwarded: 'for=10.0.0.1;host=admin.internal',
    'X-Real-IP': '10.0.0.1',
    X_Real_IP: '10.0.0.1',
    'True-Client-IP': '10.0.0.1',
    'X-Client-IP': '10.0.0.1',
    'X-Cluster-Client-IP': '10.0.0.1',
    'Cf-Access-Jwt-Assertion': 'eyJhbGciOiJub25lIn0.e30.',
    'x-kept': 'yes',
  };
  const res = await rawRequest('/api/v1/reports', { authorization: `Bearer ${token}`, 'cf-connecting-ip': '2001:db8::7', ...spoofed });
  assert.equal(res.status, 200);
  const got = origin.received.at(-1);
  const norm = (name) => name.toLowerCase().replaceAll('_', '-');
  const received = new Map(Object.entries(got.headers).map(([k, v]) => [norm(k), { k, v }]));
  for (const [name, value] of Object.entries(spoofed)) {
    if (name === 'x-kept') continue;
    const seen = received.get(norm(name));
    // Either gone, or set by the gateway itself (identity, address): never the caller's value.
    if (seen) {
      assert.ok(['x-edgeward-sub', 'x-edgeward-client', 'x-edgeward-partner', 'x-edgeward-scope', 'x-edgeward-identity', 'x-forwarded-for', 'forwarded'].includes(seen.k), `${name} reached the origin as ${seen.k}`);
      assert.notEqual(seen.v, value, `${name}: the caller's value reached the origin`);
    }
  }
  const underscored = Object.keys(got.headers).filter((k) => k.includes('_'));
  assert.deepEqual(underscored, [], 'no underscore spelling reached the origin');
  assert.equal(got.method, 'GET');
  assert.equal(got.url, '/api/v1/reports');
  assert.equal(got.headers['x-edgeward-partner'], 'beta');
  assert.equal(got.headers['x-edgeward-scope'], 'api');
  assert.notEqual(got.headers['x-edgeward-sub'], 'admin');
  assert.equal(verifyJwt(got.headers['x-edgeward-identity'], jwks).partner_id, 'beta');
  // The address is the connection's, as Cloudflare reports it, and nothing the caller said.
  assert.equal(got.headers['x-forwarded-for'], '2001:db8::7');
  assert.equal(got.headers.forwarded, 'for="[2001:db8::7]"');
  assert.equal(got.headers['x-kept'], 'yes');

  // Without CF-Connecting-IP from the caller, the runtime reports the connection's own address
  // (local workerd, like Cloudflare, sets it): that is what the origin gets, never the caller's word.
  const bare = await rawRequest('/api/v1/reports', { authorization: `Bearer ${token}`, 'x-forwarded-for': '10.0.0.1', forwarded: 'for=10.0.0.1' });
  assert.equal(bare.status, 200);
  assert.equal(origin.received.at(-1).headers['x-forwarded-for'], '127.0.0.1');
  assert.equal(origin.received.at(-1).headers.forwarded, 'for=127.0.0.1');
});

test('gateway_encoded_path_parameters_and_separators_are_400_like_their_decoded_form', async () => {
  const token = await serviceToken(acme, 'classes.read');
  await nothingReachesOrigin(async () => {
    for (const p of ['/api/v1/classes%3Bjsessionid=1', '/api/v1/classes%3bjsessionid=1', '/api/v1/classes;jsessionid=1', '/api/v1/classes%3F/admin', '/api/v1/classes%23x', '/api/v1/classes%0d%0ax-edgeward-sub:%20admin']) {
      const res = await rawRequest(p, { authorization: `Bearer ${token}` });
      assert.equal(res.status, 400, p);
      assert.equal(JSON.parse(res.body).error, 'invalid_request', p);
    }
  });
  // An encoded comma or space is no separator: still forwarded.
  const ok = await rawRequest('/api/v1/classes/a%2Cb%20c', { authorization: `Bearer ${token}` });
  assert.equal(ok.status, 200);
  assert.equal(origin.received.at(-1).url, '/api/v1/classes/a%2Cb%20c');
});

test('gateway_never_lets_the_origin_set_our_own_cookies', async () => {
  const token = await serviceToken(acme, 'api');
  const res = await call('/api/cookies', token);
  assert.equal(res.status, 200);
  // Session fixation or a CSRF token of the origin's choosing: our cookies are the edge's alone.
  assert.deepEqual(res.headers.getSetCookie(), ['theme=dark; Path=/']);
});

test('gateway_merges_the_origins_vary_with_its_own', async () => {
  const token = await serviceToken(acme, 'api');
  const browser = await call('/api/vary', token, { headers: { origin: ACME } });
  assert.equal(browser.status, 200);
  assert.equal(browser.headers.get('access-control-allow-origin'), ACME);
  assert.equal(browser.headers.get('vary'), 'Accept-Encoding, Accept-Language, Origin');
  const server = await call('/api/vary', token);
  assert.equal(server.status, 200);
  assert.equal(server.headers.get('vary'), 'Accept-Encoding, Accept-Language');
});
