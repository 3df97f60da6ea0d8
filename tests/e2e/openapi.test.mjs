// docs/openapi.json, kept true: every documented response is produced by real calls to the
// running Worker and its body and headers are checked against the document; a status the
// Worker answers that the document does not list fails; every /admin, /api and /edge route of
// crates/core/src/routes.rs is documented with exactly its methods, and an undocumented method answers 405
// with an `Allow` that lists exactly the documented ones.
//
// To document a new operation: add it to docs/openapi.json, then add example calls for each of
// its statuses to `exampleCalls()` below (one line each). The coverage test names what is missing.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import { startWorker, startOrigin, sleep, ROOT } from './harness.mjs';
import { CookieJar, basicAuth, formFields, linkAndConfirm, signWith } from './oauth.mjs';
import { LINK_REQUEST_TYP, generateJwk, publicJwk } from '../../scripts/lib/jwk.mjs';

const DOC = JSON.parse(readFileSync(path.join(ROOT, 'docs', 'openapi.json'), 'utf8'));
const ROUTES_RS = readFileSync(path.join(ROOT, 'crates', 'core', 'src', 'routes.rs'), 'utf8');
const ERROR_RS = readFileSync(path.join(ROOT, 'crates', 'core', 'src', 'protocol', 'error.rs'), 'utf8');
const AUDIT_RS = readFileSync(path.join(ROOT, 'crates', 'core', 'src', 'protocol', 'audit.rs'), 'utf8');

const HTTP_METHODS = ['get', 'head', 'post', 'put', 'patch', 'delete', 'options'];
/** Prefixes of the routes this document covers (the OAuth endpoints have discovery instead). */
const DOCUMENTED_PREFIXES = ['/admin', '/api', '/edge'];

const ACME = 'https://app.acme.example';
const PAUSED = 'https://app.paused.example';
const TINY = 'https://app.tiny.example';
const EVIL = 'https://evil.example';
const PASSWORD = 'correct horse battery staple';
const MAX_API_BODY = 1024;
const linkKey = generateJwk('EdDSA');

// ---------------------------------------------------------------------------------------------
// The document: references, operations, and a validator for the JSON Schema subset it uses.

/** The value a local `$ref` points at. */
function deref(ref) {
  assert.ok(ref.startsWith('#/'), `only local $refs are supported: ${ref}`);
  let node = DOC;
  for (const raw of ref.slice(2).split('/')) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    assert.ok(node && typeof node === 'object' && key in node, `unresolved $ref ${ref}`);
    node = node[key];
  }
  return node;
}

/** Follows `$ref`s of non-schema objects (responses, parameters) to the object itself. */
const resolved = (obj) => (obj && obj.$ref ? resolved(deref(obj.$ref)) : obj);

/** Every operation of the document: `{ key: 'GET /admin/partners', path, method, op, item }`. */
function operations() {
  const out = [];
  for (const [p, item] of Object.entries(DOC.paths)) {
    for (const m of HTTP_METHODS) {
      if (item[m]) out.push({ key: `${m.toUpperCase()} ${p}`, path: p, method: m.toUpperCase(), op: item[m], item });
    }
  }
  return out;
}

/** The parameters of an operation, path-level ones included, resolved. */
function parametersOf({ item, op }) {
  return [...(item.parameters ?? []), ...(op.parameters ?? [])].map(resolved);
}

/** A regular expression for a path template. `{path}` of `/api/{path}` takes the rest of the path. */
function templateRegex(template) {
  const src = template
    .split(/(\{[^}]+\})/)
    .map((part) => {
      if (part === '{path}') return '(.*)';
      if (part.startsWith('{')) return '([^/]+)';
      return part.replace(/[.*+?^$()|[\]\\]/g, '\\$&');
    })
    .join('');
  return new RegExp(`^${src}$`);
}

const ANNOTATIONS = new Set(['description', 'title', 'example', 'examples', 'format', 'default', 'deprecated', 'readOnly', 'writeOnly', '$comment']);
const KEYWORDS = new Set([
  '$ref', 'type', 'properties', 'required', 'additionalProperties', 'items', 'enum', 'const', 'allOf', 'oneOf', 'anyOf',
  'pattern', 'minLength', 'maxLength', 'minimum', 'maximum', 'minItems', 'maxItems',
]);

/** Every keyword of `schema` (and the schemas inside it) must be one the validator checks. */
function checkKeywords(schema, at, problems) {
  if (typeof schema !== 'object' || schema === null || Array.isArray(schema)) {
    problems.push(`${at}: a schema must be an object`);
    return;
  }
  for (const k of Object.keys(schema)) {
    if (!KEYWORDS.has(k) && !ANNOTATIONS.has(k)) problems.push(`${at}: keyword ${k} is not checked by this test's validator`);
  }
  for (const [k, s] of Object.entries(schema.properties ?? {})) checkKeywords(s, `${at}.properties.${k}`, problems);
  if (schema.items) checkKeywords(schema.items, `${at}.items`, problems);
  if (typeof schema.additionalProperties === 'object') checkKeywords(schema.additionalProperties, `${at}.additionalProperties`, problems);
  for (const k of ['allOf', 'oneOf', 'anyOf']) (schema[k] ?? []).forEach((s, i) => checkKeywords(s, `${at}.${k}[${i}]`, problems));
}

function jsonType(v) {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

/** Validates `value` against `schema`; returns the list of violations (empty: valid). */
function validate(schema, value, at = '$', errors = []) {
  if (schema.$ref) validate(deref(schema.$ref), value, at, errors);
  const t = jsonType(value);
  if (schema.type !== undefined) {
    const types = [].concat(schema.type);
    const ok = types.includes(t) || (t === 'integer' && types.includes('number'));
    if (!ok) {
      errors.push(`${at}: is ${t}, expected ${types.join(' or ')}`);
      return errors;
    }
  }
  if (schema.enum && !schema.enum.some((e) => JSON.stringify(e) === JSON.stringify(value))) {
    errors.push(`${at}: ${JSON.stringify(value)} is not one of ${JSON.stringify(schema.enum)}`);
  }
  if ('const' in schema && JSON.stringify(schema.const) !== JSON.stringify(value)) errors.push(`${at}: is not ${JSON.stringify(schema.const)}`);
  if (t === 'string') {
    if (schema.pattern && !new RegExp(schema.pattern, 'u').test(value)) errors.push(`${at}: ${JSON.stringify(value)} does not match ${schema.pattern}`);
    const len = [...value].length;
    if (schema.minLength !== undefined && len < schema.minLength) errors.push(`${at}: shorter than ${schema.minLength}`);
    if (schema.maxLength !== undefined && len > schema.maxLength) errors.push(`${at}: longer than ${schema.maxLength}`);
  }
  if (t === 'integer' || t === 'number') {
    if (schema.minimum !== undefined && value < schema.minimum) errors.push(`${at}: ${value} < ${schema.minimum}`);
    if (schema.maximum !== undefined && value > schema.maximum) errors.push(`${at}: ${value} > ${schema.maximum}`);
  }
  if (t === 'array') {
    if (schema.minItems !== undefined && value.length < schema.minItems) errors.push(`${at}: fewer than ${schema.minItems} items`);
    if (schema.maxItems !== undefined && value.length > schema.maxItems) errors.push(`${at}: more than ${schema.maxItems} items`);
    if (schema.items) value.forEach((v, i) => validate(schema.items, v, `${at}[${i}]`, errors));
  }
  if (t === 'object') {
    for (const r of schema.required ?? []) if (!(r in value)) errors.push(`${at}: missing required ${r}`);
    const props = schema.properties ?? {};
    for (const [k, v] of Object.entries(value)) {
      if (k in props) validate(props[k], v, `${at}.${k}`, errors);
      else if (schema.additionalProperties === false) errors.push(`${at}: undocumented member ${k}`);
      else if (typeof schema.additionalProperties === 'object') validate(schema.additionalProperties, v, `${at}.${k}`, errors);
    }
  }
  for (const s of schema.allOf ?? []) validate(s, value, at, errors);
  if (schema.oneOf) {
    const passing = schema.oneOf.filter((s) => validate(s, value, at, []).length === 0).length;
    if (passing !== 1) errors.push(`${at}: matches ${passing} of the oneOf schemas, not exactly one`);
  }
  if (schema.anyOf && !schema.anyOf.some((s) => validate(s, value, at, []).length === 0)) errors.push(`${at}: matches none of anyOf`);
  return errors;
}

// Whether a response's content type is one the document lists (a `*/*` media type accepts any).
function mediaTypeFor(content, contentType) {
  const got = (contentType ?? '').split(';')[0].trim().toLowerCase();
  for (const [media, def] of Object.entries(content)) {
    if (media === '*/*' || media.toLowerCase() === got) return def;
    if (media.endsWith('/*') && got.startsWith(media.slice(0, -1))) return def;
  }
  return null;
}

/** Checks one real response against the document; returns the problems found. */
function checkResponse(opKey, method, res) {
  const op = operations().find((o) => o.key === opKey);
  if (!op) return [`${opKey} is not in the document`];
  const documented = op.op.responses[String(res.status)];
  if (!documented) {
    return [`${opKey} answered ${res.status}, which the document does not list (${Object.keys(op.op.responses).join(', ')}): ${res.body.slice(0, 200)}`];
  }
  const def = resolved(documented);
  const problems = [];
  for (const [name, header] of Object.entries(def.headers ?? {})) {
    const h = resolved(header);
    const value = res.headers[name.toLowerCase()];
    if (value === undefined) {
      if (h.required) problems.push(`${opKey} ${res.status}: required header ${name} is missing`);
      continue;
    }
    if (h.schema) problems.push(...validate(h.schema, value, `${opKey} ${res.status} header ${name}`));
  }
  if (method === 'HEAD' || !def.content) {
    if (res.body !== '') problems.push(`${opKey} ${res.status}: a body where the document has none: ${res.body.slice(0, 200)}`);
    return problems;
  }
  const media = mediaTypeFor(def.content, res.headers['content-type']);
  if (!media) {
    problems.push(`${opKey} ${res.status}: content-type ${res.headers['content-type']} is not one of ${Object.keys(def.content).join(', ')}`);
    return problems;
  }
  if (media.schema && Object.keys(media.schema).length) {
    let body;
    try {
      body = JSON.parse(res.body);
    } catch {
      problems.push(`${opKey} ${res.status}: body is not JSON: ${res.body.slice(0, 200)}`);
      return problems;
    }
    problems.push(...validate(media.schema, body, `${opKey} ${res.status} body`));
  }
  return problems;
}

// ---------------------------------------------------------------------------------------------
// The Workers under test.

let w; // the Worker, fully configured
let broken; // no ADMIN_TOKEN, no SIGNING_KEYS, a failing KV, an invalid API_SCOPES: every 503
let origin;
const ctx = {};

/** One HTTP request, sent as given (path verbatim, any method, optionally chunked). */
function send(base, { method, path: p, headers = {}, body, chunked = false }) {
  return new Promise((resolve, reject) => {
    const u = new URL(base);
    const h = { ...headers };
    const chunks = body === undefined ? [] : [].concat(body).map((c) => (Buffer.isBuffer(c) ? c : Buffer.from(c)));
    if (chunks.length && !chunked && h['content-length'] === undefined) h['content-length'] = String(chunks.reduce((n, c) => n + c.length, 0));
    if (chunked) h['transfer-encoding'] = 'chunked';
    const req = http.request({ host: u.hostname, port: u.port, path: p, method, headers: h, agent: false }, (res) => {
      const parts = [];
      res.on('data', (c) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(parts).toString() }));
    });
    // The Worker may answer (413, 411) without reading the body and close the connection.
    req.on('error', (e) => (e.code === 'EPIPE' || e.code === 'ECONNRESET' ? undefined : reject(e)));
    for (const c of chunks) req.write(c);
    req.end();
  });
}

async function accessToken(client, scope) {
  const res = await w.fetch('/oauth2/token', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(client.client_id, client.client_secret) },
    body: new URLSearchParams({ grant_type: 'client_credentials', scope }).toString(),
  });
  assert.equal(res.status, 200, await res.clone().text());
  return (await res.json()).access_token;
}

async function registerClient(partner, body) {
  const res = await w.admin(`/partners/${partner}/clients`, { method: 'POST', body });
  assert.equal(res.status, 201, await res.clone().text());
  return res.json();
}

/** Links `username` to acme through the real flow: login, a signed link request, consent. */
async function linkToAcme(username) {
  const jar = new CookieJar(w.url);
  let res = await jar.fetch(`/login?return_to=${encodeURIComponent('/account')}`);
  res = await jar.postForm('/login', { ...formFields(await res.text()), username, password: PASSWORD });
  assert.equal(res.status, 303, 'login');
  const now = Math.floor(Date.now() / 1000);
  const request = signWith(linkKey, { alg: 'EdDSA', kid: linkKey.kid, typ: LINK_REQUEST_TYP }, {
    iss: ACME, aud: w.url, sub: `acme-${username}`, jti: randomUUID(), iat: now, exp: now + 240, return_to: `${ACME}/linked`,
    account_label: username, state: `state-${username}`,
  });
  const { page, agreed, confirmed } = await linkAndConfirm(jar, linkKey, request);
  assert.equal(page.status, 200, 'the link consent page');
  assert.equal(agreed.status, 303, 'agreed');
  assert.equal(confirmed.status, 200, 'linked');
}

before(async () => {
  origin = await startOrigin({
    respond(req, res) {
      if (req.url.startsWith('/api/v1/drop')) return req.socket.destroy(); // unreachable: 502
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ origin: 'ok', method: req.method, url: req.url }));
    },
  });
  w = await startWorker({
    vars: {
      ORIGIN_URL: origin.url,
      API_SCOPES: JSON.stringify({ '/api/v1': 'api' }),
      API_MAX_BODY_BYTES: String(MAX_API_BODY),
      // Usage counts are handed over after every request (asynchronously: calls poll for them).
      USAGE_FLUSH_SECONDS: '0',
    },
  });
  broken = await startWorker({ adminToken: null, signingKeys: null, failingKv: true, vars: { API_SCOPES: 'not json' } });

  const put = (id, body) => w.admin(`/partners/${id}`, { method: 'PUT', body });
  assert.equal((await put('acme', { name: 'Acme', origins: [ACME], jwks: { keys: [publicJwk(linkKey)] } })).status, 201);
  assert.equal((await put('paused', { name: 'Paused', origins: [PAUSED], status: 'suspended' })).status, 201);
  assert.equal((await put('gamma', { name: 'Gamma', origins: ['https://gamma.example'] })).status, 201);
  // One gateway request a minute per client: the 429s of the gateway. Set before any request
  // reads the partner, so no cache holds the default limits.
  assert.equal((await put('tiny', { name: 'Tiny', origins: [TINY], rate_limits: { api_per_client_per_minute: 1 } })).status, 201);
  ctx.client = await registerClient('acme', {
    name: 'Acme server',
    redirect_uris: [`${ACME}/cb`],
    grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
    scopes: ['openid', 'api', 'other'],
  });
  ctx.spare = await registerClient('acme', { name: 'Spare', redirect_uris: [`${ACME}/cb`] });
  ctx.apiToken = await accessToken(ctx.client, 'api');
  ctx.otherToken = await accessToken(ctx.client, 'other');
  ctx.tiny = await registerClient('tiny', { name: 'Tiny server', grant_types: ['client_credentials'], scopes: ['api'] });
  ctx.tinyToken = await accessToken(ctx.tiny, 'api');
  // An initial access token of Dynamic Client Registration, for the calls that revoke one.
  const issued = await w.admin('/partners/acme/registration-tokens', { method: 'POST', body: { label: 'To revoke' } });
  assert.equal(issued.status, 201, await issued.clone().text());
  ctx.registrationToken = await issued.json();
  for (const u of ['ada', 'cleo']) {
    const res = await w.admin(`/users/${u}`, { method: 'PUT', body: { password: PASSWORD, name: u.toUpperCase() } });
    assert.equal(res.status, 201);
  }
  await linkToAcme('ada');
});

after(async () => {
  await w?.stop();
  await broken?.stop();
  await origin?.stop();
});

// ---------------------------------------------------------------------------------------------
// Example calls: for each documented operation, calls that produce each documented status.
// Fields: op ('METHOD /template'), status (expected), path (sent verbatim), on ('broken' for the
// unconfigured Worker), auth ('admin' by default under /admin, null: none, 'wrong', or a bearer
// token), json (a JSON body), body + headers (anything else), chunked, why, and until: for an
// answer that comes about asynchronously or after earlier requests (usage handed over, an audit
// event written, a rate limit used up), the call is repeated until `until(response)` holds.

function exampleCalls() {
  const { client, spare, apiToken, otherToken, tiny, tinyToken, registrationToken } = ctx;
  const bearer = (t) => `Bearer ${t}`;
  const calls = [];
  const add = (op, status, path, opts = {}) => calls.push({ op, status, path, ...opts });

  // Every admin operation: 401 without the token (or with a wrong one), 503 when the admin API is closed.
  const adminCalls = {
    'GET /admin/partners': '/admin/partners',
    'GET /admin/partners/{partner_id}': '/admin/partners/acme',
    'PUT /admin/partners/{partner_id}': '/admin/partners/acme',
    'DELETE /admin/partners/{partner_id}': '/admin/partners/acme',
    'GET /admin/partners/{partner_id}/clients': '/admin/partners/acme/clients',
    'POST /admin/partners/{partner_id}/clients': '/admin/partners/acme/clients',
    'GET /admin/clients/{client_id}': `/admin/clients/${client.client_id}`,
    'DELETE /admin/clients/{client_id}': `/admin/clients/${client.client_id}`,
    'GET /admin/partners/{partner_id}/registration-tokens': '/admin/partners/acme/registration-tokens',
    'POST /admin/partners/{partner_id}/registration-tokens': '/admin/partners/acme/registration-tokens',
    'DELETE /admin/registration-tokens/{token_id}': `/admin/registration-tokens/${registrationToken.id}`,
    'DELETE /admin/clients/{client_id}/registration': `/admin/clients/${client.client_id}/registration`,
    'GET /admin/users/{username}': '/admin/users/ada',
    'PUT /admin/users/{username}': '/admin/users/ada',
    'DELETE /admin/users/{username}': '/admin/users/ada',
    'GET /admin/users/{username}/links': '/admin/users/ada/links',
    'DELETE /admin/users/{username}/links/{partner_id}': '/admin/users/ada/links/acme',
    'GET /admin/audit': '/admin/audit',
    'POST /admin/audit/migrate': '/admin/audit/migrate',
    'GET /admin/usage': '/admin/usage',
    'POST /admin/usage/migrate': '/admin/usage/migrate',
    'POST /admin/links/migrate': '/admin/links/migrate',
  };
  for (const [op, p] of Object.entries(adminCalls)) {
    add(op, 401, p, { auth: null, why: 'no admin token' });
    add(op, 401, p, { auth: 'wrong', why: 'a wrong admin token' });
    add(op, 503, p, { on: 'broken', why: 'ADMIN_TOKEN unset' });
  }

  const tooBig = { name: 'x'.repeat(70 * 1024), origins: ['https://big.example'] };
  const asText = { body: '{"name":"T"}', headers: { 'content-type': 'text/plain' } };

  add('GET /admin/partners', 200, '/admin/partners');

  add('GET /admin/partners/{partner_id}', 200, '/admin/partners/acme', { why: 'with inline jwks' });
  add('GET /admin/partners/{partner_id}', 200, '/admin/partners/tiny', { why: 'with rate_limits, all four' });
  add('GET /admin/partners/{partner_id}', 400, '/admin/partners/Not_An_Id');
  add('GET /admin/partners/{partner_id}', 404, '/admin/partners/nobody');

  add('PUT /admin/partners/{partner_id}', 201, '/admin/partners/beta', {
    json: { name: 'Beta', origins: ['https://app.beta.example'], status: 'active', jwks_uri: 'https://app.beta.example/jwks.json' },
  });
  add('PUT /admin/partners/{partner_id}', 200, '/admin/partners/beta', {
    json: { name: 'Beta', origins: ['https://app.beta.example'], issuer: 'https://id.beta.example', jwks: null, jwks_uri: null },
  });
  add('PUT /admin/partners/{partner_id}', 201, '/admin/partners/delta', {
    json: { name: 'Delta', origins: ['https://app.delta.example'], rate_limits: { api_per_minute: 100, token_per_client_per_minute: 10000000 } },
    why: 'some rate limits: the record shows all four',
  });
  add('PUT /admin/partners/{partner_id}', 200, '/admin/partners/delta', {
    json: { name: 'Delta', origins: ['https://app.delta.example'], rate_limits: null }, why: 'back to the default limits',
  });
  add('PUT /admin/partners/{partner_id}', 400, '/admin/partners/beta', { json: { name: 'Beta', origins: [] } });
  add('PUT /admin/partners/{partner_id}', 400, '/admin/partners/delta', {
    json: { name: 'Delta', origins: ['https://app.delta.example'], rate_limits: { per_day: 5 } }, why: 'an unknown limit',
  });
  add('PUT /admin/partners/{partner_id}', 400, '/admin/partners/delta', {
    json: { name: 'Delta', origins: ['https://app.delta.example'], rate_limits: { api_per_minute: 100000001 } }, why: 'a limit out of range',
  });
  add('PUT /admin/partners/{partner_id}', 400, '/admin/partners/Bad_Id', { json: { name: 'B', origins: ['https://b.example'] } });
  add('PUT /admin/partners/{partner_id}', 409, '/admin/partners/thief', { json: { name: 'Thief', origins: [ACME] } });
  add('PUT /admin/partners/{partner_id}', 409, '/admin/partners/thief', {
    json: { name: 'Thief', origins: ['https://thief.example'], issuer: ACME }, why: 'issuer conflict',
  });
  add('PUT /admin/partners/{partner_id}', 413, '/admin/partners/big', { json: tooBig });
  add('PUT /admin/partners/{partner_id}', 415, '/admin/partners/typed', asText);

  add('DELETE /admin/partners/{partner_id}', 204, '/admin/partners/gamma');
  add('DELETE /admin/partners/{partner_id}', 400, '/admin/partners/-gamma');
  add('DELETE /admin/partners/{partner_id}', 404, '/admin/partners/gamma', { why: 'already removed' });

  add('GET /admin/partners/{partner_id}/clients', 200, '/admin/partners/acme/clients');
  add('GET /admin/partners/{partner_id}/clients', 400, '/admin/partners/ACME/clients');
  add('GET /admin/partners/{partner_id}/clients', 404, '/admin/partners/nobody/clients');

  add('POST /admin/partners/{partner_id}/clients', 201, '/admin/partners/acme/clients', {
    json: { name: 'Acme Web', redirect_uris: [`${ACME}/callback`], scopes: ['openid', 'profile'] }, why: 'confidential: with its secret',
  });
  add('POST /admin/partners/{partner_id}/clients', 201, '/admin/partners/acme/clients', {
    json: {
      name: 'Acme keys', grant_types: ['client_credentials'], token_endpoint_auth_method: 'private_key_jwt',
      jwks: { keys: [publicJwk(generateJwk('EdDSA'))] }, id_token_signed_response_alg: 'EdDSA',
    },
    why: 'private_key_jwt: no secret, jwks shown',
  });
  add('POST /admin/partners/{partner_id}/clients', 201, '/admin/partners/acme/clients', {
    json: {
      name: 'Acme shown', redirect_uris: [`${ACME}/cb`], logo_uri: `${ACME}/logo.png`, policy_uri: 'https://openid.net',
      tos_uri: 'https://legal.example/tos', userinfo_signed_response_alg: 'RS256',
    },
    why: 'logo, policy and terms links, signed userinfo: shown',
  });
  add('POST /admin/partners/{partner_id}/clients', 201, '/admin/partners/acme/clients', {
    json: {
      name: 'Acme fetched keys', grant_types: ['client_credentials'], token_endpoint_auth_method: 'private_key_jwt',
      jwks_uri: `${ACME}/jwks.json`,
    },
    why: 'private_key_jwt with a jwks_uri: shown',
  });
  add('POST /admin/partners/{partner_id}/clients', 400, '/admin/partners/acme/clients', {
    json: { name: 'Off', redirect_uris: [`${EVIL}/cb`] }, why: 'redirect URI off the partner origins',
  });
  add('POST /admin/partners/{partner_id}/clients', 400, '/admin/partners/acme/clients', {
    json: { name: 'Off logo', redirect_uris: [`${ACME}/cb`], logo_uri: `${EVIL}/logo.png` }, why: 'logo_uri off the partner origins',
  });
  add('POST /admin/partners/{partner_id}/clients', 400, '/admin/partners/acme/clients', {
    json: {
      name: 'Both', grant_types: ['client_credentials'], token_endpoint_auth_method: 'private_key_jwt',
      jwks: { keys: [publicJwk(generateJwk('EdDSA'))] }, jwks_uri: `${ACME}/jwks.json`,
    },
    why: 'jwks and jwks_uri together',
  });
  add('POST /admin/partners/{partner_id}/clients', 404, '/admin/partners/nobody/clients', {
    json: { name: 'X', redirect_uris: [`${ACME}/cb`] },
  });
  add('POST /admin/partners/{partner_id}/clients', 413, '/admin/partners/acme/clients', { json: tooBig });
  add('POST /admin/partners/{partner_id}/clients', 415, '/admin/partners/acme/clients', asText);

  add('GET /admin/clients/{client_id}', 200, `/admin/clients/${client.client_id}`);
  add('GET /admin/clients/{client_id}', 404, '/admin/clients/AAAAAAAAAAAAAAAAAAAAAA');
  add('GET /admin/clients/{client_id}', 404, '/admin/clients/x', { why: 'a malformed id is not found too' });

  add('DELETE /admin/clients/{client_id}', 204, `/admin/clients/${spare.client_id}`);
  add('DELETE /admin/clients/{client_id}', 404, `/admin/clients/${spare.client_id}`, { why: 'already removed' });

  const tokens = '/admin/partners/acme/registration-tokens';
  add('POST /admin/partners/{partner_id}/registration-tokens', 201, tokens, { json: {}, why: 'the default policy, no label, no limit' });
  add('POST /admin/partners/{partner_id}/registration-tokens', 201, tokens, {
    json: {
      label: 'Acme apps', grant_types: ['authorization_code', 'refresh_token', 'client_credentials'], scopes: ['openid', 'api'],
      require_pkce: false, expires_in: 3600, max_registrations: 5,
    },
    why: 'every member',
  });
  add('POST /admin/partners/{partner_id}/registration-tokens', 201, tokens, {
    json: { label: null, grant_types: null, scopes: null, require_pkce: null, expires_in: null, max_registrations: null }, why: 'null counts as absent',
  });
  add('POST /admin/partners/{partner_id}/registration-tokens', 400, tokens, { json: { expires_in: 10 }, why: 'shorter than a minute' });
  add('POST /admin/partners/{partner_id}/registration-tokens', 400, tokens, { json: { expires_in: 91 * 24 * 3600 }, why: 'longer than 90 days' });
  add('POST /admin/partners/{partner_id}/registration-tokens', 400, tokens, { json: { max_registrations: 0 } });
  add('POST /admin/partners/{partner_id}/registration-tokens', 400, tokens, { json: { scopes: ['bad scope'] } });
  add('POST /admin/partners/{partner_id}/registration-tokens', 400, tokens, { json: { grant_types: ['implicit'] } });
  add('POST /admin/partners/{partner_id}/registration-tokens', 400, tokens, { json: { require_pkce: 'yes' } });
  add('POST /admin/partners/{partner_id}/registration-tokens', 400, tokens, { json: { policy: {} }, why: 'an unknown member' });
  add('POST /admin/partners/{partner_id}/registration-tokens', 400, '/admin/partners/ACME/registration-tokens', { json: {} });
  add('POST /admin/partners/{partner_id}/registration-tokens', 404, '/admin/partners/nobody/registration-tokens', { json: {} });
  add('POST /admin/partners/{partner_id}/registration-tokens', 413, tokens, { json: tooBig });
  add('POST /admin/partners/{partner_id}/registration-tokens', 415, tokens, asText);

  add('GET /admin/partners/{partner_id}/registration-tokens', 200, tokens, { why: 'with and without label and limit' });
  add('GET /admin/partners/{partner_id}/registration-tokens', 200, '/admin/partners/tiny/registration-tokens', { why: 'none' });
  add('GET /admin/partners/{partner_id}/registration-tokens', 400, '/admin/partners/ACME/registration-tokens');
  add('GET /admin/partners/{partner_id}/registration-tokens', 404, '/admin/partners/nobody/registration-tokens');

  add('DELETE /admin/registration-tokens/{token_id}', 204, `/admin/registration-tokens/${registrationToken.id}`);
  add('DELETE /admin/registration-tokens/{token_id}', 404, `/admin/registration-tokens/${registrationToken.id}`, { why: 'already revoked' });
  add('DELETE /admin/registration-tokens/{token_id}', 404, '/admin/registration-tokens/x', { why: 'a malformed id is not found too' });

  add('DELETE /admin/clients/{client_id}/registration', 204, `/admin/clients/${client.client_id}/registration`, { why: 'an admin-created client: no registration access to end' });
  add('DELETE /admin/clients/{client_id}/registration', 204, `/admin/clients/${client.client_id}/registration`, { why: 'again' });
  add('DELETE /admin/clients/{client_id}/registration', 404, `/admin/clients/${spare.client_id}/registration`, { why: 'a removed client' });
  add('DELETE /admin/clients/{client_id}/registration', 404, '/admin/clients/AAAAAAAAAAAAAAAAAAAAAA/registration');
  add('DELETE /admin/clients/{client_id}/registration', 404, '/admin/clients/x/registration', { why: 'a malformed id is not found too' });

  add('GET /admin/users/{username}', 200, '/admin/users/ada');
  add('GET /admin/users/{username}', 400, '/admin/users/Ada');
  add('GET /admin/users/{username}', 404, '/admin/users/nobody');

  add('PUT /admin/users/{username}', 201, '/admin/users/bea', {
    json: { password: 'a long enough password', name: 'Bea', email: 'bea@school.example', roles: ['pupil'] },
  });
  add('PUT /admin/users/{username}', 200, '/admin/users/bea', { json: { name: 'Bea B.', email: null, roles: null }, why: 'keeps the password' });
  add('PUT /admin/users/{username}', 400, '/admin/users/dan', { json: { name: 'Dan' }, why: 'a new user needs a password' });
  add('PUT /admin/users/{username}', 413, '/admin/users/dan', { json: { password: 'x'.repeat(70 * 1024), name: 'Dan' } });
  add('PUT /admin/users/{username}', 415, '/admin/users/dan', asText);

  add('DELETE /admin/users/{username}', 204, '/admin/users/bea');
  add('DELETE /admin/users/{username}', 400, '/admin/users/.bea');
  add('DELETE /admin/users/{username}', 404, '/admin/users/bea', { why: 'already removed' });

  add('GET /admin/users/{username}/links', 200, '/admin/users/ada/links', { why: 'one link' });
  add('GET /admin/users/{username}/links', 400, '/admin/users/ADA/links');
  add('GET /admin/users/{username}/links', 404, '/admin/users/nobody/links');

  add('DELETE /admin/users/{username}/links/{partner_id}', 204, '/admin/users/ada/links/acme');
  add('DELETE /admin/users/{username}/links/{partner_id}', 404, '/admin/users/ada/links/acme', { why: 'already unlinked' });
  add('DELETE /admin/users/{username}/links/{partner_id}', 404, '/admin/users/cleo/links/acme', { why: 'never linked' });
  add('DELETE /admin/users/{username}/links/{partner_id}', 400, '/admin/users/ada/links/Acme');

  // The gateway, every method. Statuses the whole gateway shares first.
  const body = (m) => (['GET', 'HEAD'].includes(m) ? {} : { body: '{"a":1}', headers: { 'content-type': 'application/json' } });
  for (const m of ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE']) {
    const op = `${m} /api/{path}`;
    const auth = bearer(apiToken);
    add(op, 200, '/api/v1/things?x=1', { auth, ...body(m) });
    add(op, 400, '/api//v1/things', { auth, why: 'an empty segment' });
    add(op, 400, '/api/v1/a%2Fb', { auth: null, why: 'an encoded slash, before the token' });
    add(op, 401, '/api/v1/things', { auth: null });
    add(op, 401, '/api/v1/things', { auth: bearer('not.a.token') });
    add(op, 403, '/api/v1/things', { auth: bearer(otherToken), why: 'insufficient_scope' });
    add(op, 403, '/api/v1/things', { auth, headers: { origin: EVIL }, why: 'origin_not_allowed' });
    add(op, 403, '/api/v1/things', { auth, headers: { origin: PAUSED }, why: 'partner_suspended' });
    add(op, 404, '/api/elsewhere', { auth, why: 'no scope rule' });
    add(op, 502, '/api/v1/drop', { auth });
    add(op, 503, '/api/v1/things', { auth, on: 'broken', why: 'API_SCOPES invalid' });
    // The tiny partner's client may send one request a minute: repeated until the limit bites.
    add(op, 429, '/api/v1/things', { auth: bearer(tinyToken), ...body(m), until: (r) => r.status === 429, why: 'the client\'s limit' });
    if (!['GET', 'HEAD'].includes(m)) {
      add(op, 411, '/api/v1/things', { auth, body: ['abc', 'def'], chunked: true });
      add(op, 413, '/api/v1/things', { auth, body: randomBytes(2 * MAX_API_BODY), headers: { 'content-type': 'application/octet-stream' } });
    }
  }
  for (const p of ['/api/v1/things', '/edge/whoami']) {
    const op = p.startsWith('/api') ? 'OPTIONS /api/{path}' : 'OPTIONS /edge/whoami';
    const pre = (originHeader, requested) => ({
      auth: null,
      headers: { ...(originHeader ? { origin: originHeader } : {}), 'access-control-request-method': requested },
    });
    add(op, 204, p, pre(ACME, p.startsWith('/api') ? 'PUT' : 'HEAD'));
    add(op, 403, p, pre(EVIL, 'GET'));
    add(op, 403, p, pre(PAUSED, 'GET'));
    add(op, 403, p, pre(null, 'GET'));
    add(op, 405, p, pre(ACME, 'TRACE'));
    add(op, 405, p, pre(ACME, 'OPTIONS'));
    if (p === '/edge/whoami') add(op, 405, p, { ...pre(ACME, 'PUT'), why: 'a gateway method, not one of whoami\'s' });
    add(op, 503, p, { ...pre(ACME, 'GET'), on: 'broken', why: 'KV failing' });
  }
  for (const m of ['GET', 'HEAD']) {
    const op = `${m} /edge/whoami`;
    add(op, 200, '/edge/whoami', { auth: bearer(apiToken) });
    add(op, 200, '/edge/whoami', { auth: bearer(apiToken), headers: { origin: ACME }, why: 'from a partner page' });
    add(op, 401, '/edge/whoami', { auth: null });
    add(op, 401, '/edge/whoami', { auth: bearer('not.a.token') });
    add(op, 403, '/edge/whoami', { auth: bearer(apiToken), headers: { origin: EVIL } });
    add(op, 403, '/edge/whoami', { auth: bearer(apiToken), headers: { origin: PAUSED } });
    add(op, 429, '/edge/whoami', { auth: bearer(tinyToken), until: (r) => r.status === 429, why: 'the client\'s limit' });
    add(op, 429, '/edge/whoami', { auth: bearer(tinyToken), headers: { origin: TINY }, until: (r) => r.status === 429, why: 'from the partner\'s page' });
    add(op, 503, '/edge/whoami', { auth: bearer('x'), on: 'broken', why: 'SIGNING_KEYS unset' });
  }

  // Last, so that the calls above left events to read.
  add('GET /admin/audit', 200, '/admin/audit', { until: (r) => rows(r, 'events') > 0, why: 'events reach the archive 1-3 s after their request' });
  add('GET /admin/audit', 200, '/admin/audit?type=admin_change&limit=2', { until: (r) => rows(r, 'events') === 2, why: 'a full page has a cursor' });
  add('GET /admin/audit', 200, `/admin/audit?partner=acme&since=${Math.floor(Date.now() / 1000) - 3600}`);
  add('GET /admin/audit', 400, '/admin/audit?since=yesterday');
  add('GET /admin/audit', 400, '/admin/audit?cursor=1', { why: 'a cursor of the old numeric form, or altered' });
  add('POST /admin/audit/migrate', 200, '/admin/audit/migrate', { why: 'nothing in the old log: done' });
  add('POST /admin/audit/migrate', 400, '/admin/audit/migrate?from=start');
  add('GET /admin/audit', 400, '/admin/audit?type=a&type=b', { why: 'a repeated parameter' });
  add('GET /admin/audit', 200, '/admin/audit?type=rate_limited&partner=tiny', { until: (r) => rows(r, 'events') > 0, why: 'the 429s above' });

  const now = Math.floor(Date.now() / 1000);
  add('GET /admin/usage', 200, '/admin/usage', { until: (r) => rows(r, 'usage') > 0, why: 'the calls above, once handed over' });
  add('GET /admin/usage', 200, `/admin/usage?partner=tiny&client=${tiny.client_id}&since=${now - 7200}&until=${now + 60}`, {
    until: (r) => rows(r, 'usage') > 0, why: 'one partner and client',
  });
  add('GET /admin/usage', 200, '/admin/usage?partner=nobody', { why: 'no rows' });
  add('GET /admin/usage', 400, '/admin/usage?since=yesterday');
  add('GET /admin/usage', 400, '/admin/usage?until=1.5');
  add('GET /admin/usage', 400, '/admin/usage?partner=a&partner=b', { why: 'a repeated parameter' });

  add('POST /admin/usage/migrate', 200, '/admin/usage/migrate', { json: {}, why: 'nothing in the old object: done' });
  add('POST /admin/usage/migrate', 200, '/admin/usage/migrate', {
    json: { after: { hour: 3600, partner_id: 'acme', client_id: '-' }, limit: 500 }, why: 'from a cursor',
  });
  add('POST /admin/usage/migrate', 400, '/admin/usage/migrate', { json: { limit: 0 } });
  add('POST /admin/usage/migrate', 400, '/admin/usage/migrate', { json: { after: 'x' }, why: 'a cursor that is not a row key' });
  add('POST /admin/usage/migrate', 413, '/admin/usage/migrate', { json: tooBig });
  add('POST /admin/usage/migrate', 415, '/admin/usage/migrate', asText);

  add('POST /admin/links/migrate', 200, '/admin/links/migrate', { json: { partner: 'acme' }, why: 'nothing in the old store: done' });
  add('POST /admin/links/migrate', 400, '/admin/links/migrate', { json: { partner: 'acme', after: 1 }, why: 'an unknown member' });
  add('POST /admin/links/migrate', 400, '/admin/links/migrate', { json: { partner: 'Acme!' }, why: 'not a partner id' });
  add('POST /admin/links/migrate', 404, '/admin/links/migrate', { json: { partner: 'nobody' } });
  add('POST /admin/links/migrate', 413, '/admin/links/migrate', { json: tooBig });
  add('POST /admin/links/migrate', 415, '/admin/links/migrate', asText);
  return calls;
}

/** How many items the JSON array `key` of a response body has (0 for anything else). */
function rows(res, key) {
  try {
    const v = JSON.parse(res.body)[key];
    return Array.isArray(v) ? v.length : 0;
  } catch {
    return 0;
  }
}

async function run(call) {
  if (!call.until) return runOnce(call);
  let res;
  // A deadline, not a count: usage rows arrive through the queue (1-second batches).
  const end = Date.now() + 30_000;
  do {
    res = await runOnce(call);
    if (call.until(res)) break;
    await sleep(100);
  } while (Date.now() < end);
  return res;
}

async function runOnce(call) {
  const target = call.on === 'broken' ? broken : w;
  const method = call.op.split(' ')[0];
  const headers = { ...(call.headers ?? {}) };
  const auth = call.auth === undefined ? (call.path.startsWith('/admin') ? 'admin' : null) : call.auth;
  if (auth === 'admin') headers.authorization = `Bearer ${w.adminToken}`;
  else if (auth === 'wrong') headers.authorization = `Bearer ${'z'.repeat(48)}`;
  else if (auth) headers.authorization = auth;
  let body = call.body;
  if (call.json !== undefined) {
    body = JSON.stringify(call.json);
    headers['content-type'] = 'application/json';
  }
  return send(target.url, { method, path: call.path, headers, body, chunked: call.chunked });
}

// ---------------------------------------------------------------------------------------------

const produced = new Set();

test('openapi_document_is_well_formed_and_every_ref_resolves', () => {
  const problems = [];
  assert.equal(DOC.openapi, '3.1.0');
  // Every $ref anywhere resolves.
  (function walk(node, at) {
    if (Array.isArray(node)) return node.forEach((v, i) => walk(v, `${at}[${i}]`));
    if (!node || typeof node !== 'object') return;
    if (typeof node.$ref === 'string') {
      try {
        deref(node.$ref);
      } catch (e) {
        problems.push(`${at}: ${e.message}`);
      }
    }
    for (const [k, v] of Object.entries(node)) walk(v, `${at}.${k}`);
  })(DOC, '#');
  for (const [name, s] of Object.entries(DOC.components.schemas)) checkKeywords(s, `#/components/schemas/${name}`, problems);
  const ids = new Set();
  for (const o of operations()) {
    const { op, key } = o;
    if (!op.operationId) problems.push(`${key}: no operationId`);
    else if (ids.has(op.operationId)) problems.push(`${key}: duplicate operationId ${op.operationId}`);
    ids.add(op.operationId);
    if (!Array.isArray(op.security)) problems.push(`${key}: no explicit security`);
    for (const req of op.security ?? []) {
      for (const scheme of Object.keys(req)) if (!DOC.components.securitySchemes[scheme]) problems.push(`${key}: unknown security scheme ${scheme}`);
    }
    if (!op.responses || !Object.keys(op.responses).length) problems.push(`${key}: no responses`);
    for (const [status, r] of Object.entries(op.responses ?? {})) {
      if (!/^[1-5][0-9][0-9]$/.test(status)) problems.push(`${key}: response ${status} is not a status code`);
      const def = resolved(r);
      if (!def?.description) problems.push(`${key} ${status}: no description`);
      for (const [media, m] of Object.entries(def?.content ?? {})) if (m.schema) checkKeywords(m.schema, `${key} ${status} ${media}`, problems);
      for (const [name, hd] of Object.entries(def?.headers ?? {})) if (resolved(hd).schema) checkKeywords(resolved(hd).schema, `${key} ${status} header ${name}`, problems);
    }
    for (const [media, m] of Object.entries(op.requestBody?.content ?? {})) if (m.schema) checkKeywords(m.schema, `${key} request ${media}`, problems);
    const params = parametersOf(o);
    const inPath = [...o.path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
    for (const name of inPath) {
      const p = params.find((x) => x.in === 'path' && x.name === name);
      if (!p) problems.push(`${key}: path parameter ${name} is not declared`);
      else if (!p.required || p.example === undefined) problems.push(`${key}: path parameter ${name} must be required and have an example`);
    }
    for (const p of params.filter((x) => x.in === 'path')) if (!inPath.includes(p.name)) problems.push(`${key}: parameter ${p.name} is not in the path`);
  }
  assert.deepEqual(problems, []);
});

/** What the Worker has that the document's enum lacks, and the other way round. */
function setDifference(documented, worker) {
  return {
    undocumented: [...new Set(worker)].filter((x) => !documented.includes(x)).sort(),
    notInTheWorker: documented.filter((x) => !worker.includes(x)).sort(),
  };
}

test('openapi_error_schema_lists_every_error_code_of_the_worker', () => {
  const asStr = ERROR_RS.slice(ERROR_RS.indexOf('pub fn as_str'));
  const codes = [...asStr.slice(0, asStr.indexOf('\n    }\n')).matchAll(/ErrorCode::\w+\s*=>\s*"([a-z_]+)"/g)].map((m) => m[1]);
  assert.ok(codes.length > 10, 'parsed the codes of crates/core/src/protocol/error.rs');
  assert.deepEqual(setDifference(DOC.components.schemas.Error.properties.error.enum, codes), { undocumented: [], notInTheWorker: [] });
});

test('openapi_audit_event_types_are_every_type_the_worker_records', () => {
  const start = AUDIT_RS.indexOf('pub fn classify(');
  assert.ok(start >= 0, 'crates/core/src/protocol/audit.rs has classify');
  const body = AUDIT_RS.slice(start, AUDIT_RS.indexOf('\n}\n', start));
  const types = [...body.matchAll(/=>\s*\{?\s*"([a-z_]+)"/g)].map((m) => m[1]);
  assert.ok(types.length > 10, 'parsed the event types of classify');
  assert.deepEqual(setDifference(DOC.components.schemas.AuditEvent.properties.type.enum, types), { undocumented: [], notInTheWorker: [] });
});

test('openapi_every_documented_response_matches_the_worker', async (t) => {
  const problems = [];
  const calls = exampleCalls();
  for (const call of calls) {
    const label = `${call.op} -> ${call.status}${call.why ? ` (${call.why})` : ''} [${call.path}]`;
    const op = operations().find((o) => o.key === call.op);
    if (!op) {
      problems.push(`${label}: no such operation in the document`);
      continue;
    }
    if (!templateRegex(op.path).test(call.path.split('?')[0])) problems.push(`${label}: the path does not match ${op.path}`);
    const res = await run(call);
    if (res.status !== call.status) {
      problems.push(`${label}: the Worker answered ${res.status}: ${res.body.slice(0, 200)}`);
    }
    const found = checkResponse(call.op, op.method, res);
    problems.push(...found.map((p) => `${label}: ${p}`));
    if (res.status === call.status && !found.length) produced.add(`${call.op} ${call.status}`);
  }
  assert.deepEqual(problems, []);
  t.diagnostic(`${calls.length} calls; ${produced.size} documented responses of ${operations().length} operations produced`);
  assert.ok(produced.size >= operations().length, `only ${produced.size} responses checked`);
});

test('openapi_every_documented_status_is_produced_by_an_example_call', () => {
  const missing = [];
  for (const o of operations()) {
    for (const status of Object.keys(o.op.responses)) {
      if (!produced.has(`${o.key} ${status}`)) missing.push(`${o.key} ${status}`);
    }
  }
  assert.deepEqual(missing, [], 'documented responses no example call produced (add calls to exampleCalls())');
});

/** The /admin, /api and /edge routes of crates/core/src/routes.rs: template -> methods (OPTIONS for CORS routes). */
function routeTable() {
  const consts = Object.fromEntries([...ROUTES_RS.matchAll(/pub const (\w+): &str = "([^"]*)";/g)].map((m) => [m[1], m[2]]));
  const methodLists = Object.fromEntries(
    [...ROUTES_RS.matchAll(/pub const (\w+): &\[Method\] = &\[([^\]]*)\];/g)].map((m) => [m[1], [...m[2].matchAll(/Method::(\w+)/g)].map((x) => x[1])]),
  );
  const body = (fn) => {
    const start = ROUTES_RS.indexOf(`pub fn ${fn}(`);
    assert.ok(start >= 0, `crates/core/src/routes.rs has no fn ${fn}`);
    const end = ROUTES_RS.indexOf('\n    }\n', start);
    return ROUTES_RS.slice(start, end);
  };
  const templates = {};
  // An arm rustfmt wrapped has its value in a block: `Route::X { .. } => {\n "..." \n }`.
  for (const m of body('template').matchAll(/Route::(\w+)(?:\s*\{\s*\.\.\s*\})?\s*=>\s*\{?\s*(?:"([^"]*)"|(\w+))/g)) {
    templates[m[1]] = m[2] ?? consts[m[3]];
  }
  const armed = [...new Set([...body('template').matchAll(/Route::(\w+)/g)].map((m) => m[1]))];
  assert.deepEqual(armed.filter((v) => !(v in templates)), [], 'arms of fn template this parser did not read');
  const methods = {};
  for (const m of body('methods').matchAll(/((?:\|?\s*Route::\w+(?:\s*\{\s*\.\.\s*\})?\s*)+)=>\s*(?:&\[([^\]]*)\]|(\w+))/g)) {
    const list = m[2] !== undefined ? [...m[2].matchAll(/Method::(\w+)/g)].map((x) => x[1]) : methodLists[m[3]];
    for (const v of m[1].matchAll(/Route::(\w+)/g)) methods[v[1]] = list;
  }
  const corsBody = body('cors');
  const cors = new Set([...corsBody.slice(corsBody.indexOf('matches!')).matchAll(/Route::(\w+)/g)].map((m) => m[1]));
  const table = {};
  for (const [variant, template] of Object.entries(templates)) {
    assert.ok(template, `template of Route::${variant}`);
    if (!DOCUMENTED_PREFIXES.some((p) => template === p || template.startsWith(`${p}/`))) continue;
    assert.ok(methods[variant], `methods of Route::${variant}`);
    const docPath = template.replace(/\/\*$/, '/{path}');
    const list = methods[variant].map((x) => x.toUpperCase());
    if (cors.has(variant)) list.push('OPTIONS');
    table[docPath] = list.sort();
  }
  return table;
}

test('openapi_documents_every_admin_api_and_edge_route_of_the_route_table', () => {
  const routes = routeTable();
  assert.ok(Object.keys(routes).length >= 10, `parsed crates/core/src/routes.rs: ${JSON.stringify(routes)}`);
  const documented = {};
  for (const [p, item] of Object.entries(DOC.paths)) {
    if (!DOCUMENTED_PREFIXES.some((x) => p.startsWith(`${x}/`))) continue;
    documented[p] = HTTP_METHODS.filter((m) => item[m]).map((m) => m.toUpperCase()).sort();
  }
  assert.deepEqual(documented, routes, 'document paths and methods (OPTIONS: CORS preflights) vs crates/core/src/routes.rs');
});

test('openapi_undocumented_methods_answer_405_with_allow_equal_to_the_documented_methods', async () => {
  const problems = [];
  for (const [template, item] of Object.entries(DOC.paths)) {
    const first = operations().find((o) => o.path === template);
    let concrete = template;
    for (const p of parametersOf(first).filter((x) => x.in === 'path')) concrete = concrete.replace(`{${p.name}}`, p.example);
    // OPTIONS operations document CORS preflights, which the Worker answers besides its methods.
    const documented = HTTP_METHODS.filter((m) => item[m] && m !== 'options').map((m) => m.toUpperCase());
    // TRACE and PROPFIND: methods no route has (the Worker reads the raw method, so an
    // unregistered one is not taken for GET). OPTIONS where no preflight is documented is sent
    // as a real preflight from an admitted partner page: it must be an ordinary 405, not a gate
    // decision.
    const probes = [...HTTP_METHODS.map((m) => m.toUpperCase()), 'TRACE', 'PROPFIND'].filter((m) => !item[m.toLowerCase()]);
    for (const method of probes) {
      const headers = { authorization: `Bearer ${w.adminToken}` };
      if (method === 'OPTIONS') Object.assign(headers, { origin: ACME, 'access-control-request-method': 'GET' });
      const res = await send(w.url, { method, path: concrete, headers });
      if (res.status !== 405) {
        problems.push(`${method} ${concrete}: ${res.status}, not 405 (undocumented method)`);
        continue;
      }
      const allow = (res.headers.allow ?? '').split(',').map((s) => s.trim()).filter(Boolean);
      if (JSON.stringify([...allow].sort()) !== JSON.stringify([...documented].sort()) || new Set(allow).size !== allow.length) {
        problems.push(`${method} ${concrete}: Allow "${res.headers.allow}", documented ${documented.join(', ')}`);
      }
      if (method !== 'HEAD') {
        const errors = validate({ allOf: [{ $ref: '#/components/schemas/Error' }, { properties: { error: { const: 'method_not_allowed' } } }] }, JSON.parse(res.body));
        problems.push(...errors.map((e) => `${method} ${concrete}: ${e}`));
      }
    }
  }
  assert.deepEqual(problems, []);
});
