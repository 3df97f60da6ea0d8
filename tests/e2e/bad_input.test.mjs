// Hostile input at every endpoint: oversized, malformed, duplicated and wrongly typed parameters
// and bodies. Each must get a clear 4xx (a JSON error, or an error page for pages a person
// sees), never a 5xx, never a redirect to somewhere unverified.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker, addPartner, startOrigin } from './harness.mjs';
import { basicAuth } from './oauth.mjs';

let w;
let origin;
let client;

before(async () => {
  origin = await startOrigin();
  w = await startWorker({ vars: { ORIGIN_URL: origin.url, API_SCOPES: '{"/api": "api"}' } });
  await addPartner(w, 'acme', ['https://app.acme.example']);
  client = await (await w.admin('/partners/acme/clients', {
    method: 'POST',
    body: { name: 'A', redirect_uris: ['https://app.acme.example/cb'], grant_types: ['authorization_code', 'client_credentials'], scopes: ['openid', 'api'] },
  })).json();
});
after(async () => {
  await w?.stop();
  await origin?.stop();
});

const BIG = 'x'.repeat(40_000);
const FORM = 'application/x-www-form-urlencoded';

/** Bad query strings, for endpoints that read the query. */
const badQueries = [
  ['oversized', `a=${BIG}`],
  ['duplicated', 'client_id=a&client_id=b&response_type=code'],
  ['malformed percent', 'client_id=%zz&redirect_uri=%'],
  ['invalid UTF-8', 'client_id=%ff%fe&state=%c3%28'],
  ['control characters', 'client_id=%00%01&return_to=%0d%0aLocation:%20https://evil.example'],
  ['no values', '&&&=&=='],
];

/** Bad form bodies, for endpoints that read a form. */
const badForms = [
  ['oversized', { 'content-type': FORM }, `a=${BIG}`],
  ['duplicated', { 'content-type': FORM }, 'grant_type=client_credentials&grant_type=authorization_code'],
  ['malformed percent', { 'content-type': FORM }, 'grant_type=%zz&code=%'],
  ['invalid UTF-8', { 'content-type': FORM }, 'grant_type=%ff%fe'],
  ['JSON with a form type', { 'content-type': FORM }, '{"grant_type":"client_credentials"}'],
  ['JSON type', { 'content-type': 'application/json' }, '{"grant_type":"client_credentials"}'],
  ['no type', {}, 'grant_type=client_credentials'],
  ['multipart', { 'content-type': 'multipart/form-data; boundary=x' }, '--x\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--x--'],
  ['empty', { 'content-type': FORM }, ''],
];

/** Bad JSON bodies, for the admin API. */
const badJson = [
  ['not JSON', 'not json'],
  ['truncated', '{"name":"A","origins":["https://a.example"'],
  ['array', '[1,2,3]'],
  ['null', 'null'],
  ['number', '42'],
  ['wrong types', '{"name":7,"origins":"https://a.example","status":true,"rate_limits":"fast","redirect_uris":{},"scopes":[1],"password":5}'],
  ['deeply nested', `{"name":${'['.repeat(5000)}${']'.repeat(5000)}}`],
  ['oversized', JSON.stringify({ name: BIG.repeat(10), origins: ['https://a.example'] })],
  ['invalid UTF-8 escape', '{"name":"\\ud800","origins":["https://a.example"]}'],
  ['unknown fields', '{"name":"A","origins":["https://a.example"],"admin":true}'],
];

const badAuthHeaders = [
  ['Bearer, no token', 'Bearer'],
  ['Bearer with spaces', 'Bearer a b c'],
  ['Basic', basicAuth('x', 'y')],
  ['huge', `Bearer ${'a'.repeat(30_000)}`],
  ['garbage scheme', 'Negotiate abc'],
  ['JSON', 'Bearer {"alg":"none"}'],
];

async function assertClear4xx(res, what, { page = false } = {}) {
  assert.ok(res.status >= 400 && res.status < 500, `${what}: status ${res.status}`);
  const location = res.headers.get('location');
  assert.equal(location, null, `${what}: no redirect on bad input (got ${location})`);
  const type = res.headers.get('content-type') ?? '';
  const text = await res.text();
  if (page && type.includes('text/html')) {
    assert.ok(text.length > 0, `${what}: an error page`);
  } else {
    assert.match(type, /application\/json/, `${what}: JSON error (${type})`);
    const body = JSON.parse(text);
    assert.equal(typeof body.error, 'string', `${what}: an error code`);
    assert.equal(typeof body.error_description, 'string', `${what}: a description`);
  }
}

test('bad_queries_at_every_get_endpoint_are_4xx_never_5xx', async () => {
  const pages = ['/oauth2/authorize', '/login', '/link', '/login/auto', '/account', '/oauth2/logout'];
  const apis = ['/api/v1/x', '/edge/whoami', '/oauth2/userinfo', '/admin/audit', '/admin/usage', '/admin/partners'];
  for (const [name, q] of badQueries) {
    for (const p of pages) {
      const res = await w.fetch(`${p}?${q}`);
      // A page may answer 200 with its own form when the query is merely irrelevant (e.g. /account
      // asks to sign in); what it must never do is fail or redirect off-site.
      assert.ok(res.status < 500, `${name} ${p}: ${res.status}`);
      const loc = res.headers.get('location');
      if (loc) assert.ok(loc.startsWith('/') && !loc.startsWith('//'), `${name} ${p}: redirect ${loc}`);
      await res.arrayBuffer();
    }
    for (const p of apis) {
      const res = await w.fetch(`${p}?${q}`, { headers: { authorization: p.startsWith('/admin') ? `Bearer ${w.adminToken}` : 'Bearer x' } });
      assert.ok(res.status < 500, `${name} ${p}: ${res.status}`);
      await res.arrayBuffer();
    }
  }
  // The admin queries refuse what they cannot read.
  for (const q of ['since=abc', 'since=1&since=2', 'limit=-1', 'cursor=1e99']) {
    await assertClear4xx(await w.admin(`/audit?${q}`), `audit ${q}`);
  }
  for (const q of ['since=abc', 'until=1&until=2', `partner=${BIG}`]) {
    await assertClear4xx(await w.admin(`/usage?${q}`), `usage ${q}`);
  }
});

test('bad_form_bodies_at_every_post_endpoint_are_4xx_never_5xx', async () => {
  const oauth = ['/oauth2/token', '/oauth2/revoke', '/oauth2/introspect'];
  const pages = ['/oauth2/authorize', '/login', '/link', '/login/auto', '/account', '/oauth2/logout'];
  for (const [name, headers, body] of badForms) {
    for (const p of oauth) {
      const res = await w.fetch(p, { method: 'POST', headers: { ...headers, authorization: basicAuth(client.client_id, client.client_secret) }, body });
      await assertClear4xx(res, `${name} ${p}`);
    }
    for (const p of pages) {
      const res = await w.fetch(p, { method: 'POST', headers, body });
      const loc = res.headers.get('location');
      if (p === '/account' && res.status === 303 && loc?.startsWith('/login?')) {
        // Without a session the account page sends the person to sign in first (a local
        // redirect), before it reads any form.
        await res.arrayBuffer();
        continue;
      }
      await assertClear4xx(res, `${name} ${p}`, { page: true });
    }
    const api = await w.fetch('/oauth2/userinfo', { method: 'POST', headers: { ...headers, authorization: 'Bearer x' }, body });
    await assertClear4xx(api, `${name} userinfo`);
  }
});

test('bad_admin_json_is_400_and_writes_nothing', async () => {
  const targets = [
    ['PUT', '/partners/bad-input'],
    ['POST', '/partners/acme/clients'],
    ['PUT', '/users/bad-input'],
  ];
  for (const [name, body] of badJson) {
    for (const [method, p] of targets) {
      const res = await w.admin(p, { method, body, headers: { 'content-type': 'application/json' } });
      await assertClear4xx(res, `${name} ${method} ${p}`);
    }
  }
  for (const [method, p] of [['PUT', '/partners/bad-input'], ['PUT', '/users/bad-input']]) {
    const res = await w.admin(p, { method, body: '{"name":"A"}', headers: { 'content-type': 'text/plain' } });
    await assertClear4xx(res, `wrong content type ${p}`);
  }
  assert.equal((await w.admin('/partners/bad-input')).status, 404, 'no partner was written');
  assert.equal((await w.admin('/users/bad-input')).status, 404, 'no user was written');
  for (const id of [BIG.slice(0, 300), '%00', '..', 'a/b', 'UPPER']) {
    const res = await w.admin(`/partners/${encodeURIComponent(id)}`);
    assert.ok(res.status === 400 || res.status === 404, `partner id ${id.slice(0, 10)}: ${res.status}`);
    await res.arrayBuffer();
  }
});

test('bad_authorization_headers_are_401_never_5xx', async () => {
  for (const [name, auth] of badAuthHeaders) {
    for (const p of ['/api/v1/x', '/edge/whoami', '/oauth2/userinfo']) {
      const res = await w.fetch(p, { headers: { authorization: auth } });
      assert.ok(res.status === 401 || res.status === 400 || res.status === 431, `${name} ${p}: ${res.status}`);
      await res.arrayBuffer();
    }
    const admin = await w.fetch('/admin/partners', { headers: { authorization: auth } });
    assert.equal(admin.status, 401, `${name} admin`);
    await admin.arrayBuffer();
    const token = await w.fetch('/oauth2/token', { method: 'POST', headers: { 'content-type': FORM, authorization: auth }, body: 'grant_type=client_credentials' });
    await assertClear4xx(token, `${name} token`);
  }
  assert.equal(origin.received.length, 0, 'nothing reached the origin');
});

test('bad_origin_and_cookie_headers_are_refused_cleanly', async () => {
  for (const o of ['null', 'https://', 'javascript:alert(1)', `https://${'a'.repeat(3000)}.example`, 'https://app.acme.example, https://evil.example']) {
    const res = await w.fetch('/edge/whoami', { headers: { origin: o, authorization: 'Bearer x' } });
    assert.equal(res.status, 403, o.slice(0, 40));
    assert.equal(res.headers.get('access-control-allow-origin'), null);
    await res.arrayBuffer();
  }
  for (const cookie of ['__Host-edgeward_session=' + BIG.slice(0, 4000), '__Host-edgeward_session=%ff;;;=', '=; =; ;']) {
    const res = await w.fetch('/account', { headers: { cookie } });
    assert.ok(res.status < 500, `cookie: ${res.status}`);
    await res.arrayBuffer();
  }
});

/** What a hostile caller sends: markup, a quote, a backslash, control and non-ASCII characters. */
const HOSTILE = '<script>"\\\x01\x7fé\u202e';
const HOSTILE_PARTS = ['<script>', '"', '\\', '\x01', '\x7f', 'é', '\u202e', 'script'];

/** RFC 6749 §4.1.2.1: error_description is %x20-21 / %x23-5B / %x5D-7E, and in our own words. */
function assertOurWords(description, what) {
  assert.equal(typeof description, 'string', `${what}: a description`);
  assert.match(description, /^[\x20\x21\x23-\x5b\x5d-\x7e]+$/, `${what}: only RFC 6749 characters (${JSON.stringify(description)})`);
  for (const part of HOSTILE_PARTS) assert.ok(!description.includes(part), `${what}: echoes ${JSON.stringify(part)} in ${JSON.stringify(description)}`);
}

const authorizeParams = (extra) => ({
  response_type: 'code',
  client_id: client.client_id,
  redirect_uri: 'https://app.acme.example/cb',
  code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
  code_challenge_method: 'S256',
  state: 's1',
  ...extra,
});

test('error_descriptions_never_echo_the_request_in_redirects', async () => {
  for (const [what, extra, code] of [
    // Nothing the client may have (a scope it may not have is left out, RFC 6749 §3.3).
    ['hostile scope', { scope: HOSTILE }, 'invalid_scope'],
    ['hostile prompt', { scope: 'openid', prompt: HOSTILE }, 'invalid_request'],
  ]) {
    const res = await w.fetch(`/oauth2/authorize?${new URLSearchParams(authorizeParams(extra))}`, { redirect: 'manual' });
    assert.equal(res.status, 302, what);
    const location = new URL(res.headers.get('location'));
    assert.equal(location.origin + location.pathname, 'https://app.acme.example/cb', what);
    assert.equal(location.searchParams.get('error'), code, what);
    assertOurWords(location.searchParams.get('error_description'), what);
    assert.equal(location.searchParams.get('state'), 's1');
  }
});

test('error_descriptions_never_echo_the_request_in_json_or_pages', async () => {
  const token = (body) =>
    w.fetch('/oauth2/token', {
      method: 'POST',
      headers: { 'content-type': FORM, authorization: basicAuth(client.client_id, client.client_secret) },
      body,
    });
  // A scope the client may not have, and a repeated parameter with a hostile name.
  let res = await token(new URLSearchParams({ grant_type: 'client_credentials', scope: `api ${HOSTILE}` }));
  assert.equal(res.status, 400);
  let body = await res.json();
  assert.equal(body.error, 'invalid_scope');
  assertOurWords(body.error_description, 'token scope');
  const name = encodeURIComponent(`x${HOSTILE}`);
  res = await token(`grant_type=client_credentials&${name}=1&${name}=2`);
  assert.equal(res.status, 400);
  body = await res.json();
  assert.equal(body.error, 'invalid_request');
  assertOurWords(body.error_description, 'token repeated parameter');

  // The error page of an unverified authorize request shows our description only.
  res = await w.fetch(`/oauth2/authorize?${name}=1&${name}=2&client_id=${client.client_id}`);
  assert.equal(res.status, 400);
  assert.equal(res.headers.get('location'), null);
  const html = await res.text();
  assert.match(html, /a parameter is repeated/);
  assert.doesNotMatch(html, /script|&lt;|&quot;|é/, 'the page does not show the parameter name, raw or escaped');

  // Admin bodies: a hostile member name (unknown, or repeated) and a hostile origin value.
  for (const [what, raw] of [
    ['unknown member', `{"name":"A","origins":["https://a.example"],${JSON.stringify(HOSTILE)}:1}`],
    ['repeated member', `{"name":"A","origins":["https://a.example"],${JSON.stringify(HOSTILE)}:1,${JSON.stringify(HOSTILE)}:2}`],
    ['hostile origin', JSON.stringify({ name: 'A', origins: [`https://${HOSTILE}.example`] })],
    ['hostile rate limit name', JSON.stringify({ name: 'A', origins: ['https://a.example'], rate_limits: { [HOSTILE]: 1 } })],
  ]) {
    res = await w.admin('/partners/hostile', { method: 'PUT', body: raw });
    assert.equal(res.status, 400, what);
    body = await res.json();
    assert.equal(body.error, 'invalid_request', what);
    assertOurWords(body.error_description, what);
    if (body.field !== undefined) assertOurWords(body.field, `${what} (field)`);
  }
  res = await w.admin('/partners/hostile', { method: 'PUT', body: `{"name":"A","origins":["https://a.example"],${JSON.stringify(HOSTILE)}:1}` });
  assert.equal((await res.json()).field, undefined, 'an unknown member is not named in field either');
  // Someone else's origin: the conflict names the owner, not the submitted value.
  res = await w.admin('/partners/hostile', { method: 'PUT', body: { name: 'A', origins: ['https://own.hostile.example', 'https://APP.acme.example'] } });
  assert.equal(res.status, 409);
  body = await res.json();
  assert.equal(body.error_description, 'origins[1]: already belongs to partner acme');
  assert.equal(body.field, 'origins[1]');
});

test('admin_query_numbers_out_of_range_are_400_invalid_request', async () => {
  const out = ['9007199254740992', '18446744073709551615', '18446744073709551616', '99999999999999999999999', '-1', '1e309', '1.5', '+1'];
  const cases = [
    ...['since', 'limit'].map((f) => ['audit', f]),
    ...['since', 'until'].map((f) => ['usage', f]),
  ];
  for (const [endpoint, field] of cases) {
    for (const v of out) {
      const res = await w.admin(`/${endpoint}?${field}=${encodeURIComponent(v)}`);
      assert.equal(res.status, 400, `${endpoint} ${field}=${v}`);
      const body = await res.json();
      assert.equal(body.error, 'invalid_request', `${endpoint} ${field}=${v}`);
      assert.equal(body.field, field, `${endpoint} ${field}=${v}`);
    }
    // The largest number JSON holds exactly is still a number.
    const max = await w.admin(`/${endpoint}?${field}=9007199254740991`);
    assert.equal(max.status, 200, `${endpoint} ${field}=2^53-1`);
    await max.arrayBuffer();
  }
  // The audit cursor is opaque text now (docs/storage.md): a number, in range or not, is no cursor.
  for (const v of [...out, '9007199254740991', '42']) {
    const res = await w.admin(`/audit?cursor=${encodeURIComponent(v)}`);
    assert.equal(res.status, 400, `audit cursor=${v}`);
    const body = await res.json();
    assert.equal(body.error, 'invalid_request', `audit cursor=${v}`);
    assert.equal(body.field, 'cursor', `audit cursor=${v}`);
  }
});
