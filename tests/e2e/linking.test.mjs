// Account linking: a partner's signed link request, a recent login, consent, one link, and a
// link token back. Every rule has a test that tries to break it; a refused request shows an
// error page and never redirects.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomUUID } from 'node:crypto';
import { startWorker, addPartner } from './harness.mjs';
import { CookieJar, browserFlow, confirmLink, formFields, pkce, verifyJwt } from './oauth.mjs';
import { LINK_REQUEST_TYP, LOGIN_ASSERTION_TYP, generateJwk, publicJwk, signJwt } from '../../scripts/lib/jwk.mjs';

let w;
const PASSWORD = 'correct horse battery staple';
const ORIGIN = 'https://app.acme.example';
const key = generateJwk('EdDSA');
const otherKey = generateJwk('EdDSA');

before(async () => {
  w = await startWorker();
  const put = await w.admin('/partners/acme', {
    method: 'PUT',
    body: { name: 'Acme Learning', origins: [ORIGIN], jwks: { keys: [publicJwk(key)] } },
  });
  assert.equal(put.status, 201);
  await w.admin('/partners/beta', {
    method: 'PUT',
    body: { name: 'Beta', origins: ['https://app.beta.example'], jwks: { keys: [publicJwk(otherKey)] } },
  });
  for (const u of ['lena', 'marc', 'nina']) {
    await w.admin(`/users/${u}`, { method: 'PUT', body: { password: PASSWORD, name: u.toUpperCase() } });
  }
});
after(() => w?.stop());

const sign = signJwt;

function linkRequest(overrides = {}, header = {}, jwk = key) {
  const now = Math.floor(Date.now() / 1000);
  const payload = {
    iss: ORIGIN, aud: w.url, sub: `acme-user-${randomUUID()}`, jti: randomUUID(), iat: now, exp: now + 240,
    return_to: `${ORIGIN}/linked`, state: 'link-state', account_label: 'acme account', ...overrides,
  };
  for (const [k, v] of Object.entries(payload)) if (v === undefined) delete payload[k];
  return sign(jwk, { alg: 'EdDSA', kid: jwk.kid, typ: LINK_REQUEST_TYP, ...header }, payload);
}

async function login(jar, username) {
  let res = await jar.fetch(`/login?return_to=${encodeURIComponent('/account')}`);
  const fields = formFields(await res.text());
  res = await jar.postForm('/login', { ...fields, username, password: PASSWORD });
  assert.equal(res.status, 303);
}

/** Opens the link URL in a logged-in browser and answers the consent page. When the user
 * allowed it, the partner's server confirms it (as a partner does once `state` matched its own
 * session), unless `confirm` is false: the answer carries `linkToken` then. */
async function link(jar, request, decision = 'allow', { confirm = true, jwk = key } = {}) {
  const page = await jar.fetch(`/link?request=${encodeURIComponent(request)}`);
  assert.equal(page.status, 200, 'the consent page');
  const html = await page.text();
  if (jwk === key) assert.match(html, /Acme Learning/);
  const res = await jar.postForm('/link', { ...formFields(html), decision });
  const location = res.headers.get('location');
  if (confirm && res.status === 303 && location && new URL(location).searchParams.has('link_code')) {
    const confirmed = await confirmLink(w.url, jwk, request, location);
    assert.equal(confirmed.status, 200, `the partner confirms: ${await confirmed.clone().text()}`);
    res.linkToken = (await confirmed.json()).link_token;
  }
  return res;
}

async function assertRefusedPage(res, message) {
  assert.ok(res.status >= 400, `${message}: status ${res.status}`);
  assert.equal(res.headers.get('location'), null, `${message}: never redirected`);
  assert.match(res.headers.get('content-type'), /text\/html/);
  return res.text();
}

test('link_flow_login_consent_and_link_token', async () => {
  const jar = new CookieJar(w.url);
  const request = linkRequest({ sub: 'acme-lena' });
  // Not signed in: the login page first, then back to the link.
  let res = await jar.fetch(`/link?request=${encodeURIComponent(request)}`);
  assert.equal(res.status, 302);
  const loginUrl = new URL(res.headers.get('location'), w.url);
  assert.equal(loginUrl.pathname, '/login');
  res = await jar.fetch(loginUrl.pathname + loginUrl.search);
  res = await jar.postForm('/login', { ...formFields(await res.text()), username: 'lena', password: PASSWORD });
  assert.equal(res.status, 303);
  res = await jar.fetch(res.headers.get('location'));
  assert.equal(res.status, 200);
  const html = await res.text();
  assert.match(html, /Link your Acme Learning account/);
  assert.match(html, /https:\/\/app\.acme\.example/);
  assert.match(html, /Acme Learning calls it: <strong>acme account<\/strong>/, 'names the partner account, as the partner\'s words');
  res = await jar.postForm('/link', { ...formFields(html), decision: 'allow' });
  assert.equal(res.status, 303);
  const back = new URL(res.headers.get('location'));
  assert.equal(back.origin + back.pathname, `${ORIGIN}/linked`);
  assert.equal(back.searchParams.get('state'), 'link-state');
  assert.equal(back.searchParams.get('link_token'), null, 'no link token in the browser');
  const code = back.searchParams.get('link_code');
  assert.match(code, /^eu\.\d{1,2}\.[A-Za-z0-9_-]{43}$/, 'a one-time link code, naming the shard of its pending link');
  // Not linked until the partner's server confirms.
  const auto = await postAutoLogin(new CookieJar(w.url), { assertion: loginAssertion('acme-lena'), return_to: '/account' });
  assert.equal(auto.status, 403, 'an unconfirmed link signs nobody in');
  assert.match(await auto.text(), /not linked/);
  const confirmed = await confirmLink(w.url, key, request, back.href);
  assert.equal(confirmed.status, 200);
  assert.equal(confirmed.headers.get('cache-control'), 'no-store');
  const body = await confirmed.json();
  const jwks = await (await w.fetch('/.well-known/jwks.json')).json();
  const token = verifyJwt(body.link_token, jwks);
  assert.equal(body.sub, token.sub);
  assert.equal(body.partner_sub, 'acme-lena');
  assert.equal(token.iss, w.url);
  assert.equal(token.aud, ORIGIN, 'aud is the partner issuer');
  assert.equal(token.partner_sub, 'acme-lena');
  assert.ok(token.sub && token.sub !== 'lena', 'a pairwise subject');
  assert.ok(token.exp - token.iat <= 300);
});

test('link_deny_returns_access_denied_with_state', async () => {
  const jar = new CookieJar(w.url);
  await login(jar, 'marc');
  const res = await link(jar, linkRequest(), 'deny');
  assert.equal(res.status, 303);
  const back = new URL(res.headers.get('location'));
  assert.equal(back.searchParams.get('error'), 'access_denied');
  assert.equal(back.searchParams.get('state'), 'link-state');
  assert.equal(back.searchParams.get('link_token'), null);
});

test('link_request_replay_is_refused_sequential_and_parallel', async () => {
  const jar = new CookieJar(w.url);
  await login(jar, 'nina');
  const request = linkRequest({ sub: 'acme-nina' });
  assert.equal((await link(jar, request)).status, 303);
  await assertRefusedPage(await link(jar, request), 'sequential replay');

  const racer = new CookieJar(w.url);
  await login(racer, 'marc');
  const raced = linkRequest({ sub: 'acme-marc-race' });
  const page = await racer.fetch(`/link?request=${encodeURIComponent(raced)}`);
  const fields = formFields(await page.text());
  const results = await Promise.all(Array.from({ length: 20 }, () => racer.postForm('/link', { ...fields, decision: 'allow' })));
  const statuses = results.map((r) => r.status);
  assert.equal(statuses.filter((s) => s === 303).length, 1, `statuses ${statuses}`);
  assert.equal(statuses.filter((s) => s === 403).length, 19, `statuses ${statuses}`);
  // The partner confirms the one that went through (later tests use marc's link).
  const won = results.find((r) => r.status === 303);
  assert.equal((await confirmLink(w.url, key, raced, won.headers.get('location'))).status, 200);
});

test('link_requests_breaking_a_rule_show_an_error_page', async () => {
  const jar = new CookieJar(w.url);
  await login(jar, 'lena');
  const now = Math.floor(Date.now() / 1000);
  const enc = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const good = linkRequest();
  const [, payload] = good.split('.');
  const cases = {
    expired: linkRequest({ iat: now - 400, exp: now - 100 }),
    'not yet valid': linkRequest({ nbf: now + 600 }),
    'lifetime over five minutes': linkRequest({ exp: now + 3600 }),
    'wrong aud': linkRequest({ aud: 'https://other.example' }),
    'wrong iss': linkRequest({ iss: 'https://unknown.example' }),
    "signed by another partner's key": linkRequest({}, { kid: key.kid }, { ...otherKey, kid: key.kid }),
    'unknown kid': linkRequest({}, { kid: 'nope' }),
    'alg none': `${enc({ alg: 'none', kid: key.kid, typ: LINK_REQUEST_TYP })}.${payload}.`,
    'HS256 with the public key': (() => {
      const input = `${enc({ alg: 'HS256', kid: key.kid, typ: LINK_REQUEST_TYP })}.${payload}`;
      return `${input}.${createHmac('sha256', JSON.stringify(publicJwk(key))).update(input).digest('base64url')}`;
    })(),
    'return_to off the allowlist': linkRequest({ return_to: 'https://evil.example/steal' }),
    'return_to suffix trick': linkRequest({ return_to: 'https://app.acme.example.evil.example/x' }),
    'no jti': linkRequest({ jti: undefined }),
  };
  for (const [what, request] of Object.entries(cases)) {
    const res = await jar.fetch(`/link?request=${encodeURIComponent(request)}`);
    const html = await assertRefusedPage(res, what);
    assert.doesNotMatch(html, /evil\.example/, `${what}: the page does not link to return_to`);
  }
});

test('link_for_a_suspended_partner_is_refused', async () => {
  await w.admin('/partners/sleepy', {
    method: 'PUT',
    body: { name: 'Sleepy', origins: ['https://sleepy.example'], status: 'suspended', jwks: { keys: [publicJwk(otherKey)] }, issuer: 'https://id.sleepy.example' },
  });
  const jar = new CookieJar(w.url);
  await login(jar, 'lena');
  const request = linkRequest({ iss: 'https://id.sleepy.example', return_to: 'https://sleepy.example/x' }, { kid: otherKey.kid }, otherKey);
  const html = await assertRefusedPage(await jar.fetch(`/link?request=${encodeURIComponent(request)}`), 'suspended');
  assert.match(html, /suspended/);
});

test('one_partner_account_links_one_user_and_one_user_one_account', async () => {
  const a = new CookieJar(w.url);
  await login(a, 'lena');
  // lena is linked as acme-lena (first test); linking her to another acme account is refused.
  await assertRefusedPage(await link(a, linkRequest({ sub: 'acme-lena-second' })), 'second account for one user');
  // and another user cannot take acme-lena.
  const b = new CookieJar(w.url);
  await login(b, 'marc');
  const html = await assertRefusedPage(await link(b, linkRequest({ sub: 'acme-lena' })), 'taken partner account');
  assert.match(html, /already linked/);
});

test('link_form_without_csrf_is_refused', async () => {
  const jar = new CookieJar(w.url);
  await login(jar, 'marc');
  const request = linkRequest();
  const page = await jar.fetch(`/link?request=${encodeURIComponent(request)}`);
  const { csrf, ...fields } = formFields(await page.text());
  await assertRefusedPage(await jar.postForm('/link', { ...fields, decision: 'allow' }), 'no csrf');
});

test('link_with_keys_from_the_partners_jwks_uri', async () => {
  // The partner serves its keys itself (on loopback, which the origin rules allow for tests).
  const http = await import('node:http');
  const served = { keys: [publicJwk(otherKey)] };
  let hits = 0;
  const server = http.createServer((req, res) => {
    hits += 1;
    res.writeHead(req.url === '/jwks.json' ? 200 : 404, { 'content-type': 'application/json' });
    res.end(JSON.stringify(served));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const origin = `http://127.0.0.1:${server.address().port}`;
  try {
    const put = await w.admin('/partners/remote', {
      method: 'PUT',
      body: { name: 'Remote Keys', origins: [origin], jwks_uri: `${origin}/jwks.json` },
    });
    assert.equal(put.status, 201);
    const jar = new CookieJar(w.url);
    await login(jar, 'nina');
    const request = linkRequest({ iss: origin, return_to: `${origin}/done`, sub: 'remote-nina' }, { kid: otherKey.kid }, otherKey);
    const page = await jar.fetch(`/link?request=${encodeURIComponent(request)}`);
    assert.equal(page.status, 200, 'verified with the fetched keys');
    assert.equal(hits, 1);
    // An unknown kid right after a fetch does not trigger another fetch (at most one per 30 s).
    const stranger = generateJwk('EdDSA');
    const unknown = linkRequest({ iss: origin, return_to: `${origin}/done` }, { kid: stranger.kid }, stranger);
    await assertRefusedPage(await jar.fetch(`/link?request=${encodeURIComponent(unknown)}`), 'unknown kid');
    assert.equal(hits, 1, 'no refetch within 30 s');
  } finally {
    await new Promise((r) => server.close(r));
  }
});

function loginAssertion(sub, overrides = {}, aud = w.url, typ = LOGIN_ASSERTION_TYP) {
  const now = Math.floor(Date.now() / 1000);
  return sign(key, { alg: 'EdDSA', kid: key.kid, typ }, { iss: ORIGIN, aud, sub, jti: randomUUID(), iat: now, exp: now + 60, ...overrides });
}

/** An RFC 7523 assertion for the jwt-bearer grant: `typ` JWT, for the token endpoint. */
function grantAssertion(sub, overrides = {}) {
  return loginAssertion(sub, overrides, `${w.url}/oauth2/token`, 'JWT');
}

/**
 * The partner's intended path: its own page posts the assertion, so the browser sends the page's
 * origin in `Origin`. `origin: null` leaves the header out.
 */
function postAutoLogin(jar, fields, origin = ORIGIN) {
  return (jar ?? new CookieJar(w.url)).postForm('/login/auto', fields, origin === null ? {} : { origin });
}

test('auto_login_with_a_linked_account_starts_a_session', async () => {
  // lena is linked as acme-lena by the first test.
  const jar = new CookieJar(w.url);
  const res = await postAutoLogin(jar, { assertion: loginAssertion('acme-lena'), return_to: '/account' });
  assert.equal(res.status, 303);
  assert.equal(res.headers.get('location'), `${w.url}/account`);
  assert.ok([...jar.cookies.keys()].some((k) => k.includes('session')), 'a session without credentials');
});

test('auto_login_continues_an_authorization_request', async () => {
  const client = await (await w.admin('/partners/acme/clients', {
    method: 'POST',
    body: { name: 'Acme Auto', redirect_uris: [`${ORIGIN}/cb`], scopes: ['openid', 'profile'] },
  })).json();
  const autoLogin = async (jar, scope) => {
    const params = {
      assertion: loginAssertion('acme-lena'), response_type: 'code', client_id: client.client_id,
      redirect_uri: `${ORIGIN}/cb`, scope, state: 'auto', code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
      code_challenge_method: 'S256',
    };
    const res = await postAutoLogin(jar, params);
    assert.equal(res.status, 303);
    const next = new URL(res.headers.get('location'));
    assert.equal(next.pathname, '/oauth2/authorize');
    assert.equal(next.searchParams.get('assertion'), null, 'the assertion is not passed along');
    return jar.fetch(next.toString());
  };
  // Nothing consented yet: automatic login cannot agree in lena's name; she signs in first.
  let res = await autoLogin(new CookieJar(w.url), 'openid');
  assert.equal(res.status, 302);
  assert.match(res.headers.get('location'), /^\/login\?return_to=%2Foauth2%2Fauthorize/);

  // lena consents to openid herself, with her password...
  const { callback } = await browserFlow(w, { client, username: 'lena', password: PASSWORD, scope: 'openid', challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM' });
  assert.ok(callback.searchParams.get('code'));
  // ...and from then on automatic login goes straight on to a code for what she agreed to,
  res = await autoLogin(new CookieJar(w.url), 'openid');
  assert.equal(res.status, 302);
  const cb = new URL(res.headers.get('location'));
  assert.equal(`${cb.origin}${cb.pathname}`, `${ORIGIN}/cb`);
  assert.ok(cb.searchParams.get('code'), 'a code, no consent page');
  // but not for more.
  res = await autoLogin(new CookieJar(w.url), 'openid profile');
  assert.equal(res.status, 302);
  assert.match(res.headers.get('location'), /^\/login\?/);
});

test('auto_login_without_a_link_gives_no_session', async () => {
  const jar = new CookieJar(w.url);
  const res = await postAutoLogin(jar, { assertion: loginAssertion('acme-nobody') });
  assert.equal(res.status, 403);
  assert.match(await res.text(), /not linked/);
  assert.equal(jar.cookies.size, 0);
});

test('auto_login_assertion_replay_and_bad_assertions_are_refused', async () => {
  const a = loginAssertion('acme-lena');
  const first = await postAutoLogin(null, { assertion: a });
  assert.equal(first.status, 303);
  const again = await postAutoLogin(null, { assertion: a });
  assert.match(await assertRefusedPage(again, 'replay'), /already used/);
  // Nor does a used assertion get as far as asking anyone (a forwarded URL, another site's form).
  assert.match(await assertRefusedPage(await fetch(`${w.url}/login/auto?${new URLSearchParams({ assertion: a })}`, { redirect: 'manual' }), 'replay by GET'), /already used/);

  const raced = loginAssertion('acme-lena');
  const results = await Promise.all(Array.from({ length: 20 }, () => postAutoLogin(null, { assertion: raced })));
  assert.equal(results.filter((r) => r.status === 303).length, 1, `statuses ${results.map((r) => r.status)}`);

  const now = Math.floor(Date.now() / 1000);
  for (const [what, bad] of Object.entries({
    'lifetime over two minutes': loginAssertion('acme-lena', { exp: now + 600 }),
    expired: loginAssertion('acme-lena', { iat: now - 300, exp: now - 100 }),
    'wrong aud': loginAssertion('acme-lena', {}, 'https://other.example'),
    'another partner key': sign(otherKey, { alg: 'EdDSA', kid: key.kid, typ: LOGIN_ASSERTION_TYP }, { iss: ORIGIN, aud: w.url, sub: 'acme-lena', jti: randomUUID(), exp: now + 60 }),
    'return_to off the platform': null,
  })) {
    if (bad === null) {
      const res = await postAutoLogin(null, { assertion: loginAssertion('acme-lena'), return_to: 'https://evil.example/' });
      await assertRefusedPage(res, what);
      continue;
    }
    await assertRefusedPage(await postAutoLogin(null, { assertion: bad }), what);
  }
});

test('jwt_bearer_grant_issues_an_access_token_for_the_linked_user', async () => {
  // marc is linked as acme-marc-race by the replay test.
  const svc = await (await w.admin('/partners/acme/clients', {
    method: 'POST',
    body: { name: 'Acme Server', grant_types: ['urn:ietf:params:oauth:grant-type:jwt-bearer'], scopes: ['openid', 'profile'] },
  })).json();
  const beta = await (await w.admin('/partners/beta/clients', {
    method: 'POST',
    body: { name: 'Beta Server', grant_types: ['urn:ietf:params:oauth:grant-type:jwt-bearer'], scopes: ['openid'] },
  })).json();
  const grant = (client, assertion) => fetch(`${w.url}/oauth2/token`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`${client.client_id}:${client.client_secret}`).toString('base64')}`,
    },
    body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion }),
  });
  const res = await grant(svc, grantAssertion('acme-marc-race'));
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(body.refresh_token, undefined);
  // The link lets the partner recognise marc, nothing more: he never consented to profile.
  assert.equal(body.scope, 'openid');
  const info = await (await fetch(`${w.url}/oauth2/userinfo`, { headers: { authorization: `Bearer ${body.access_token}` } })).json();
  assert.deepEqual(Object.keys(info), ['sub']);
  for (const [what, r] of [
    ['another partner\'s client', await grant(beta, grantAssertion('acme-marc-race'))],
    ['not linked', await grant(svc, grantAssertion('acme-nobody'))],
  ]) {
    assert.equal(r.status, 400, what);
    assert.equal((await r.json()).error, 'invalid_grant', what);
  }
});

test('jwt_bearer_grant_releases_only_scopes_the_user_consented_to', async () => {
  // marc is linked as acme-marc-race by the replay test. He has an email address to withhold.
  assert.equal((await w.admin('/users/marc', { method: 'PUT', body: { name: 'MARC', email: 'marc@school.example' } })).status, 200);
  const app = await (await w.admin('/partners/acme/clients', {
    method: 'POST',
    body: {
      name: 'Acme App', redirect_uris: [`${ORIGIN}/cb`],
      grant_types: ['authorization_code', 'urn:ietf:params:oauth:grant-type:jwt-bearer'], scopes: ['openid', 'profile', 'email'],
    },
  })).json();
  const grant = (fields) => fetch(`${w.url}/oauth2/token`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`${app.client_id}:${app.client_secret}`).toString('base64')}`,
    },
    body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion: grantAssertion('acme-marc-race'), ...fields }),
  });
  // Asking for profile before marc agreed to it: refused, no token.
  let res = await grant({ scope: 'openid profile' });
  assert.equal(res.status, 400);
  let body = await res.json();
  assert.equal(body.error, 'invalid_scope');
  assert.match(body.error_description, /not consented to a requested scope/);
  assert.equal(body.access_token, undefined);

  // marc consents to openid and profile for this client in the code flow...
  const { challenge } = pkce();
  await browserFlow(w, { client: app, username: 'marc', password: PASSWORD, scope: 'openid profile', challenge });
  // ...and from then on the grant carries profile, but still not email.
  res = await grant({});
  assert.equal(res.status, 200);
  body = await res.json();
  assert.equal(body.scope, 'openid profile');
  const info = await (await fetch(`${w.url}/oauth2/userinfo`, { headers: { authorization: `Bearer ${body.access_token}` } })).json();
  assert.equal(info.name, 'MARC');
  assert.equal(info.email, undefined);
  res = await grant({ scope: 'email' });
  assert.equal(res.status, 400);
  assert.equal((await res.json()).error, 'invalid_scope');
});

test('auto_login_session_gives_no_consent_reaches_no_other_partner_and_never_links', async () => {
  // lena is linked as acme-lena. Whoever holds acme's signing key can start her session; that
  // session must not reach another partner's client, nor link accounts to her.
  const mk = async (partner, origin) => (await w.admin(`/partners/${partner}/clients`, {
    method: 'POST', body: { name: `${partner} web`, redirect_uris: [`${origin}/cb`], scopes: ['openid'] },
  })).json();
  const acmeClient = await mk('acme', ORIGIN);
  const betaClient = await mk('beta', 'https://app.beta.example');
  const jar = new CookieJar(w.url);
  let res = await postAutoLogin(jar, { assertion: loginAssertion('acme-lena'), return_to: '/account' });
  assert.equal(res.status, 303, 'signed in automatically');
  const authorize = (c) => jar.fetch(`/oauth2/authorize?${new URLSearchParams({
    response_type: 'code', client_id: c.client_id, redirect_uri: c.redirect_uris[0], scope: 'openid', state: 's',
    code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256',
  })}`);

  res = await authorize(betaClient);
  assert.equal(res.status, 302);
  assert.match(res.headers.get('location'), /^\/login\?return_to=/, "another partner's client: sign in with a password");
  res = await authorize(acmeClient);
  assert.equal(res.status, 302);
  assert.match(res.headers.get('location'), /^\/login\?return_to=/, "acme's own client, nothing consented: the password first");

  res = await jar.fetch(`/link?request=${encodeURIComponent(linkRequest({ sub: 'acme-lena-second-try' }))}`);
  assert.equal(res.status, 302);
  assert.match(res.headers.get('location'), /^\/login\?return_to=%2Flink/, 'linking: sign in with a password');

  // The account page shows her links, but unlinking needs her password too.
  const page = await jar.fetch('/account');
  assert.equal(page.status, 200);
  res = await jar.postForm('/account', { ...formFields(await page.text()), partner_id: 'acme' });
  assert.equal(res.status, 303);
  assert.match(res.headers.get('location'), /^\/login\?return_to=%2Faccount/);
  const links = await (await w.admin('/users/lena/links')).json();
  assert.ok(links.links.some((l) => l.partner_id === 'acme'), 'still linked');
});

test('unlinking_ends_the_sessions_that_came_through_the_link', async () => {
  await w.admin('/users/rosa', { method: 'PUT', body: { password: PASSWORD, name: 'Rosa' } });
  const own = new CookieJar(w.url);
  await login(own, 'rosa');
  assert.equal((await link(own, linkRequest({ sub: 'acme-rosa' }))).status, 303);
  const auto = new CookieJar(w.url);
  assert.equal((await postAutoLogin(auto, { assertion: loginAssertion('acme-rosa'), return_to: '/account' })).status, 303);
  assert.equal((await auto.fetch('/account')).status, 200, 'signed in through the link');
  assert.equal((await w.admin('/users/rosa/links/acme', { method: 'DELETE' })).status, 204);
  const after = await auto.fetch('/account');
  assert.equal(after.status, 302, 'the session that came through the link has ended');
  assert.match(after.headers.get('location'), /^\/login\?/);
  assert.equal((await own.fetch('/account')).status, 200, 'her own password session goes on');
});

test('partner_key_rotation_takes_effect_at_once_in_the_isolate_that_made_it', async () => {
  const gamma = 'https://app.gamma.example';
  const keyA = generateJwk('EdDSA');
  const keyB = generateJwk('EdDSA');
  const put = (k) => w.admin('/partners/gamma', { method: 'PUT', body: { name: 'Gamma', origins: [gamma], jwks: { keys: [publicJwk(k)] } } });
  const request = (k) => linkRequest({ iss: gamma, return_to: `${gamma}/linked`, sub: `gamma-${randomUUID()}` }, { kid: k.kid }, k);
  assert.equal((await put(keyA)).status, 201);
  const jar = new CookieJar(w.url);
  await login(jar, 'nina');
  const open = (r) => jar.fetch(`/link?request=${encodeURIComponent(r)}`);
  assert.equal((await open(request(keyA))).status, 200, 'key A works (and the partner record is now cached)');
  assert.equal((await put(keyB)).status, 200);
  assert.equal((await open(request(keyB))).status, 200, 'the new key works at once');
  assert.equal((await open(request(keyA))).status, 403, 'the old key is refused at once');
});

test('automatic_logins_never_push_out_the_users_own_sessions', async () => {
  await w.admin('/users/sami', { method: 'PUT', body: { password: PASSWORD, name: 'Sami' } });
  const own = new CookieJar(w.url);
  await login(own, 'sami');
  assert.equal((await link(own, linkRequest({ sub: 'acme-sami' }))).status, 303);
  // Nine automatic logins: one more than a partner may hold sessions for at once.
  const autos = [];
  for (let i = 0; i < 9; i++) {
    const jar = new CookieJar(w.url);
    assert.equal((await postAutoLogin(jar, { assertion: loginAssertion('acme-sami'), return_to: '/account' })).status, 303);
    autos.push(jar);
  }
  assert.equal((await own.fetch('/account')).status, 200, "the user's own session stays");
  // (Sessions started in the same second are equally old: which one made room is not fixed.)
  const live = [];
  for (const jar of autos) live.push((await jar.fetch('/account')).status === 200);
  assert.equal(live.filter(Boolean).length, 8, `the partner holds 8 sessions at most: ${live}`);
});

test('partner_jwt_of_one_kind_never_passes_for_another', async () => {
  // lena is linked as acme-lena by the first test. The three kinds of partner JWT share keys,
  // iss and aud; only their typ tells them apart (RFC 8725 §3.11).
  const svc = await (await w.admin('/partners/acme/clients', {
    method: 'POST',
    body: { name: 'Acme Typ', grant_types: ['urn:ietf:params:oauth:grant-type:jwt-bearer'], scopes: ['openid'] },
  })).json();
  const grant = (assertion) => fetch(`${w.url}/oauth2/token`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`${svc.client_id}:${svc.client_secret}`).toString('base64')}`,
    },
    body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion }),
  });
  const auto = (assertion) => postAutoLogin(null, { assertion, return_to: '/account' });

  // A login assertion, which travels in a browser URL, is not a grant assertion.
  let res = await grant(loginAssertion('acme-lena', {}, `${w.url}/oauth2/token`));
  assert.equal(res.status, 400);
  let body = await res.json();
  assert.equal(body.error, 'invalid_grant');
  assert.match(body.error_description, /typ/);
  assert.equal(body.access_token, undefined);
  // ...but the same claims as a grant assertion are (the refusal above was the typ).
  res = await grant(grantAssertion('acme-lena'));
  assert.equal(res.status, 200, 'a grant assertion works');

  // Neither a grant assertion nor a link request nor an untyped JWT signs anyone in.
  const now = Math.floor(Date.now() / 1000);
  for (const [what, jwt] of Object.entries({
    'grant assertion': loginAssertion('acme-lena', {}, w.url, 'JWT'),
    'link request': linkRequest({ sub: 'acme-lena', exp: now + 100 }),
    'no typ': sign(key, { alg: 'EdDSA', kid: key.kid }, { iss: ORIGIN, aud: w.url, sub: 'acme-lena', jti: randomUUID(), iat: now, exp: now + 60 }),
  })) {
    res = await auto(jwt);
    assert.equal(res.status, 403, what);
    assert.equal(res.headers.get('location'), null, `${what}: no redirect`);
    assert.equal(res.headers.get('set-cookie'), null, `${what}: no session`);
    assert.match(await res.text(), /typ header must be edgeward-login\+jwt/, what);
  }
  res = await auto(loginAssertion('acme-lena'));
  assert.equal(res.status, 303, 'a login assertion signs in');

  // A login assertion is not a link request.
  const jar = new CookieJar(w.url);
  await login(jar, 'lena');
  res = await jar.fetch(`/link?request=${encodeURIComponent(loginAssertion('acme-lena'))}`);
  assert.equal(res.status, 403);
  assert.match(await res.text(), /typ header must be edgeward-link\+jwt/);
});

test('account_page_lists_links_and_unlink_stops_auto_login_and_revokes_grants', async () => {
  await w.admin('/users/olga', { method: 'PUT', body: { password: PASSWORD, name: 'Olga' } });
  const jar = new CookieJar(w.url);
  await login(jar, 'olga');
  assert.equal((await link(jar, linkRequest({ sub: 'acme-olga' }))).status, 303);
  // A grant issued through the link (jwt-bearer) and an automatic login work...
  const svc = await (await w.admin('/partners/acme/clients', {
    method: 'POST',
    body: { name: 'Acme Server 2', grant_types: ['urn:ietf:params:oauth:grant-type:jwt-bearer'], scopes: ['openid'] },
  })).json();
  const tokenRes = await fetch(`${w.url}/oauth2/token`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`${svc.client_id}:${svc.client_secret}`).toString('base64')}`,
    },
    body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion: grantAssertion('acme-olga') }),
  });
  const { access_token } = await tokenRes.json();
  const userinfo = () => fetch(`${w.url}/oauth2/userinfo`, { headers: { authorization: `Bearer ${access_token}` } });
  assert.equal((await userinfo()).status, 200);

  // The account page lists the link with its date.
  let page = await jar.fetch('/account');
  assert.equal(page.status, 200);
  const html = await page.text();
  assert.match(html, /Acme Learning/);
  assert.match(html, /linked on \d{4}-\d{2}-\d{2}/);
  const admin = await (await w.admin('/users/olga/links')).json();
  assert.deepEqual(admin.links.map((l) => l.partner_id), ['acme']);

  // Unlink without the CSRF token: refused.
  const fields = formFields(html);
  const { csrf, ...noCsrf } = fields;
  assert.equal((await jar.postForm('/account', noCsrf)).status, 403);
  // Unlink.
  page = await jar.postForm('/account', fields);
  assert.equal(page.status, 200);
  assert.match(await page.text(), /No apps are linked/);
  assert.equal((await userinfo()).status, 401, 'grants issued through the link are revoked');
  const auto = await postAutoLogin(null, { assertion: loginAssertion('acme-olga') });
  assert.equal(auto.status, 403, 'automatic login right after unlinking fails');
  assert.match(await auto.text(), /not linked/);
});

test('admin_unlink_and_link_listing', async () => {
  await w.admin('/users/pavel', { method: 'PUT', body: { password: PASSWORD, name: 'Pavel' } });
  const jar = new CookieJar(w.url);
  await login(jar, 'pavel');
  assert.equal((await link(jar, linkRequest({ sub: 'acme-pavel' }))).status, 303);
  assert.equal((await w.admin('/users/pavel/links/acme', { method: 'DELETE' })).status, 204);
  assert.equal((await w.admin('/users/pavel/links/acme', { method: 'DELETE' })).status, 404);
  assert.deepEqual((await (await w.admin('/users/pavel/links')).json()).links, []);
  const auto = await postAutoLogin(null, { assertion: loginAssertion('acme-pavel') });
  assert.equal(auto.status, 403);
});

test('auto_login_never_reaches_a_new_account_reusing_a_linked_username', async () => {
  await w.admin('/users/quinn', { method: 'PUT', body: { password: PASSWORD, name: 'Quinn One' } });
  const jar = new CookieJar(w.url);
  await login(jar, 'quinn');
  assert.equal((await link(jar, linkRequest({ sub: 'acme-quinn' }))).status, 303);
  assert.equal((await w.admin('/users/quinn', { method: 'DELETE' })).status, 204);
  await w.admin('/users/quinn', { method: 'PUT', body: { password: PASSWORD, name: 'Quinn Two' } });
  const auto = await postAutoLogin(null, { assertion: loginAssertion('acme-quinn'), return_to: '/account' });
  assert.equal(auto.status, 403);
  assert.equal(auto.headers.get('set-cookie'), null, 'no session for the new person');
});

test('auto_login_by_post_and_refused_for_a_suspended_partner', async () => {
  // lena is linked as acme-lena; the partner's page posts the assertion.
  const jar = new CookieJar(w.url);
  const res = await postAutoLogin(jar, { assertion: loginAssertion('acme-lena'), return_to: '/account' });
  assert.equal(res.status, 303);
  assert.equal(res.headers.get('location'), `${w.url}/account`);
  // A suspended partner's assertion is refused (sleepy is suspended, keyed with otherKey).
  const now = Math.floor(Date.now() / 1000);
  const suspended = sign(otherKey, { alg: 'EdDSA', kid: otherKey.kid, typ: LOGIN_ASSERTION_TYP }, { iss: 'https://id.sleepy.example', aud: w.url, sub: 'x', jti: randomUUID(), exp: now + 60 });
  const html = await assertRefusedPage(await fetch(`${w.url}/login/auto?${new URLSearchParams({ assertion: suspended })}`, { redirect: 'manual' }), 'suspended');
  assert.match(html, /suspended/);
});

/** The partner's server redeems a link code; the parsed JSON answer with the status. */
async function confirmAs(request, location, overrides = {}, jwk = key) {
  const res = await confirmLink(w.url, jwk, request, location, overrides);
  return { status: res.status, body: await res.json(), cacheControl: res.headers.get('cache-control') };
}

/** Signs `username` in afresh and agrees to `request`, without the partner's confirmation:
 * the location the browser is sent back to. */
async function agree(username, request) {
  const jar = new CookieJar(w.url);
  await login(jar, username);
  const res = await link(jar, request, 'allow', { confirm: false });
  assert.equal(res.status, 303);
  return { jar, location: res.headers.get('location') };
}

/** Automatic login as the partner's page does it (a POST from its origin). */
async function autoLoginStatus(partnerSub) {
  const res = await postAutoLogin(new CookieJar(w.url), { assertion: loginAssertion(partnerSub), return_to: '/account' });
  return { status: res.status, html: await res.text(), location: res.headers.get('location') };
}

test('forwarded_link_request_links_nothing_until_the_partner_confirms_it', async () => {
  // Mallory has an account at acme; acme signs a link request for it, and Mallory forwards the
  // URL to Rosa. Rosa signs in and allows: her browser goes back to acme with a link code, but
  // acme finds that `state` is not her browser session's and never confirms it.
  await w.admin('/users/rosa', { method: 'PUT', body: { password: PASSWORD, name: 'Rosa' } });
  const forwarded = linkRequest({ sub: 'acme-mallory', state: 'mallorys-session' });
  const { jar, location } = await agree('rosa', forwarded);
  const back = new URL(location);
  assert.equal(back.origin + back.pathname, `${ORIGIN}/linked`, 'only the verified return_to');
  assert.equal(back.searchParams.get('link_token'), null);
  // Nothing signs Mallory in as Rosa, nor gets tokens for her.
  const auto = await autoLoginStatus('acme-mallory');
  assert.equal(auto.status, 403);
  assert.match(auto.html, /not linked/);
  assert.equal(auto.location, null);
  const svc = await (await w.admin('/partners/acme/clients', {
    method: 'POST',
    body: { name: 'Acme Forward Check', grant_types: ['urn:ietf:params:oauth:grant-type:jwt-bearer'], scopes: ['openid'] },
  })).json();
  const grant = await fetch(`${w.url}/oauth2/token`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`${svc.client_id}:${svc.client_secret}`).toString('base64')}`,
    },
    body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion: grantAssertion('acme-mallory') }),
  });
  assert.equal(grant.status, 400);
  const refusal = await grant.json();
  assert.equal(refusal.error, 'invalid_grant');
  assert.equal(refusal.access_token, undefined);
  // Rosa's account page shows no link, and the admin API lists none.
  assert.match(await (await jar.fetch('/account')).text(), /No apps are linked/);
  assert.deepEqual((await (await w.admin('/users/rosa/links')).json()).links, []);
});

test('link_code_redeems_only_for_its_request_account_and_partner', async () => {
  await w.admin('/users/sam', { method: 'PUT', body: { password: PASSWORD, name: 'Sam' } });
  const request = linkRequest({ sub: 'acme-sam' });
  let { location } = await agree('sam', request);
  // Another link request of the same partner: refused, and the code is burnt.
  let r = await confirmAs(request, location, { link_request: randomUUID() });
  assert.deepEqual([r.status, r.body.error], [400, 'invalid_grant'], 'another link request');
  assert.equal(r.body.link_token, undefined);
  assert.equal(r.cacheControl, 'no-store');
  r = await confirmAs(request, location);
  assert.deepEqual([r.status, r.body.error], [400, 'invalid_grant'], 'burnt by the wrong attempt');
  assert.equal((await autoLoginStatus('acme-sam')).status, 403, 'not linked');

  ({ location } = await agree('sam', linkRequest({ sub: 'acme-sam' })));
  const second = linkRequest({ sub: 'acme-sam' });
  ({ location } = await agree('sam', second));
  r = await confirmAs(second, location, { sub: 'acme-someone-else' });
  assert.deepEqual([r.status, r.body.error], [400, 'invalid_grant'], 'another partner account');

  // Another partner cannot redeem acme's code, even naming the same request.
  const third = linkRequest({ sub: 'acme-sam' });
  ({ location } = await agree('sam', third));
  r = await confirmAs(third, location, { iss: 'https://app.beta.example' }, otherKey);
  assert.deepEqual([r.status, r.body.error], [400, 'invalid_grant'], 'another partner');
  // A confirmation that does not verify: invalid_client, nothing linked.
  r = await confirmAs(third, location, {}, otherKey);
  assert.deepEqual([r.status, r.body.error], [401, 'invalid_client'], "signed with another partner's key");
  const res = await fetch(`${w.url}/link/confirm`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ link_code: new URL(location).searchParams.get('link_code'), assertion: linkRequest({ sub: 'acme-sam' }) }),
  });
  assert.deepEqual([res.status, (await res.json()).error], [401, 'invalid_client'], 'a link request is not a confirmation');
  for (const [what, fields, error] of [
    ['no link code', { assertion: 'x' }, 'invalid_request'],
    ['no assertion', { link_code: 'x' }, 'invalid_request'],
  ]) {
    const bad = await fetch(`${w.url}/link/confirm`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(fields),
    });
    assert.deepEqual([bad.status, (await bad.json()).error], [400, error], what);
  }
  const unknown = await confirmAs(third, `${ORIGIN}/linked?link_code=${'A'.repeat(43)}`);
  assert.deepEqual([unknown.status, unknown.body.error], [400, 'invalid_grant'], 'unknown code');
  // The right confirmation still works for this code: the refusals above did not burn it.
  r = await confirmAs(third, location);
  assert.equal(r.status, 200);
  assert.equal(r.body.partner_sub, 'acme-sam');
  assert.equal((await autoLoginStatus('acme-sam')).status, 303, 'linked once confirmed');
  assert.equal((await w.admin('/users/sam/links/acme', { method: 'DELETE' })).status, 204);
});

test('link_code_confirmed_in_parallel_exactly_one_wins_and_a_replay_undoes_the_link', async () => {
  await w.admin('/users/tara', { method: 'PUT', body: { password: PASSWORD, name: 'Tara' } });
  const request = linkRequest({ sub: 'acme-tara' });
  const { location } = await agree('tara', request);
  const results = await Promise.all(Array.from({ length: 20 }, () => confirmAs(request, location)));
  const statuses = results.map((r) => r.status);
  // At most one wins; a winner racing the replays may itself learn that its link was undone.
  const wins = statuses.filter((s) => s === 200).length;
  assert.ok(wins <= 1, `statuses ${statuses}`);
  assert.equal(statuses.filter((s) => s === 400).length, 20 - wins, `statuses ${statuses}`);
  assert.ok(results.filter((r) => r.status === 400).every((r) => r.body.error === 'invalid_grant' && !r.body.link_token));
  // Used more than once: as with an authorization code (RFC 6749 §4.1.2), what it made is undone.
  assert.equal((await autoLoginStatus('acme-tara')).status, 403, 'the link made from a replayed code is removed');
  assert.deepEqual((await (await w.admin('/users/tara/links')).json()).links, []);
  // A sequential replay after a clean first use: the same.
  const again = linkRequest({ sub: 'acme-tara' });
  const second = await agree('tara', again);
  assert.equal((await confirmAs(again, second.location)).status, 200);
  assert.equal((await autoLoginStatus('acme-tara')).status, 303);
  const replay = await confirmAs(again, second.location);
  assert.deepEqual([replay.status, replay.body.error], [400, 'invalid_grant']);
  assert.equal((await autoLoginStatus('acme-tara')).status, 403);
});

test('link_consent_page_shows_the_partners_label_escaped_and_refuses_hidden_characters', async () => {
  const jar = new CookieJar(w.url);
  await login(jar, 'nina');
  const res = await jar.fetch(`/link?request=${encodeURIComponent(linkRequest({ account_label: '<script>x</script> "nina" & co' }))}`);
  assert.equal(res.status, 200);
  const html = await res.text();
  assert.match(html, /calls it: <strong>&lt;script&gt;x&lt;\/script&gt; &quot;nina&quot; &amp; co<\/strong>/);
  assert.doesNotMatch(html, /<script>/);
  for (const [what, label] of [
    ['no label', undefined],
    ['empty label', ''],
    ['right-to-left override', 'nina\u202Egnp.exe'],
    ['control character', 'nina\u0007'],
    ['too long', 'n'.repeat(65)],
  ]) {
    const page = await jar.fetch(`/link?request=${encodeURIComponent(linkRequest({ account_label: label }))}`);
    const text = await assertRefusedPage(page, what);
    assert.match(text, /account_label/, what);
  }
});

test('a_new_password_between_consent_and_confirmation_voids_the_link', async () => {
  await w.admin('/users/uma', { method: 'PUT', body: { password: PASSWORD, name: 'Uma' } });
  const request = linkRequest({ sub: 'acme-uma' });
  const { location } = await agree('uma', request);
  assert.equal((await w.admin('/users/uma', { method: 'PUT', body: { password: 'a whole new password 42', name: 'Uma' } })).status, 200);
  const r = await confirmAs(request, location);
  assert.deepEqual([r.status, r.body.error], [400, 'invalid_grant']);
  assert.match(r.body.error_description, /password changed/);
  assert.equal((await autoLoginStatus('acme-uma')).status, 403);
  assert.deepEqual((await (await w.admin('/users/uma/links')).json()).links, []);
});

test('a_username_given_to_someone_new_between_consent_and_confirmation_voids_the_link', async () => {
  await w.admin('/users/wes', { method: 'PUT', body: { password: PASSWORD, name: 'Wes One' } });
  const request = linkRequest({ sub: 'acme-wes' });
  const { location } = await agree('wes', request);
  // The account goes, and the username is given to someone new, with the same password epoch.
  assert.equal((await w.admin('/users/wes', { method: 'DELETE' })).status, 204);
  assert.equal((await w.admin('/users/wes', { method: 'PUT', body: { password: PASSWORD, name: 'Wes Two' } })).status, 201);
  const r = await confirmAs(request, location);
  assert.deepEqual([r.status, r.body.error], [400, 'invalid_grant']);
  assert.equal(r.body.link_token, undefined);
  assert.deepEqual((await (await w.admin('/users/wes/links')).json()).links, [], 'the new person has no link');
  assert.equal((await autoLoginStatus('acme-wes')).status, 403);
});

test('a_new_password_pauses_links_and_ends_consents_until_the_user_confirms_again', async () => {
  await w.admin('/users/vera', { method: 'PUT', body: { password: PASSWORD, name: 'Vera' } });
  let jar = new CookieJar(w.url);
  await login(jar, 'vera');
  assert.equal((await link(jar, linkRequest({ sub: 'acme-vera' }))).status, 303);
  const app = await (await w.admin('/partners/acme/clients', {
    method: 'POST',
    body: {
      name: 'Acme Pause App', redirect_uris: [`${ORIGIN}/cb`],
      grant_types: ['authorization_code', 'urn:ietf:params:oauth:grant-type:jwt-bearer'], scopes: ['openid', 'profile'],
    },
  })).json();
  await browserFlow(w, { client: app, username: 'vera', password: PASSWORD, scope: 'openid profile', challenge: pkce().challenge });
  const grant = () => fetch(`${w.url}/oauth2/token`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`${app.client_id}:${app.client_secret}`).toString('base64')}`,
    },
    body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion: grantAssertion('acme-vera'), scope: 'openid profile' }),
  });
  assert.equal((await grant()).status, 200, 'before: linked and consented');
  assert.equal((await autoLoginStatus('acme-vera')).status, 303);

  // Someone learnt Vera's password and linked; she (or an operator) sets a new one.
  const NEW = 'vera has a new password 7';
  assert.equal((await w.admin('/users/vera', { method: 'PUT', body: { password: NEW, name: 'Vera' } })).status, 200);
  const auto = await autoLoginStatus('acme-vera');
  assert.equal(auto.status, 403, 'the link signs nobody in');
  assert.match(auto.html, /paused/);
  assert.equal(auto.location, null);
  assert.deepEqual((await (await w.admin('/users/vera/links')).json()).links.map((l) => [l.partner_id, l.paused]), [['acme', true]]);
  let res = await grant();
  assert.equal(res.status, 400, 'nor issues tokens');
  let body = await res.json();
  assert.equal(body.error, 'invalid_grant');
  assert.equal(body.access_token, undefined);

  // Signed in with the new password, Vera sees the link paused; consent is asked again.
  jar = new CookieJar(w.url);
  res = await jar.fetch('/login?return_to=%2Faccount');
  res = await jar.postForm('/login', { ...formFields(await res.text()), username: 'vera', password: NEW });
  assert.equal(res.status, 303);
  const page = await (await jar.fetch('/account')).text();
  assert.match(page, /Paused: you set a new password/);
  assert.match(page, /Acme Learning calls it: <strong>acme account<\/strong>/, 'which account at the partner it is');
  const { challenge } = pkce();
  const authorize = await jar.fetch(`/oauth2/authorize?${new URLSearchParams({
    response_type: 'code', client_id: app.client_id, redirect_uri: `${ORIGIN}/cb`, scope: 'openid profile',
    code_challenge: challenge, code_challenge_method: 'S256', state: 's',
  })}`);
  assert.equal(authorize.status, 200, 'the consent page again: the old consent is gone');
  assert.match(await authorize.text(), /decision/);

  // Confirming (CSRF-protected, password session) brings the link back.
  const forms = [...page.matchAll(/<form[\s\S]*?<\/form>/g)].map((m) => m[0]);
  const confirmForm = forms.find((f) => /name="action" value="confirm"/.test(f));
  assert.ok(confirmForm, 'a Confirm button');
  const fields = formFields(confirmForm);
  const { csrf, ...noCsrf } = fields;
  assert.equal((await jar.postForm('/account', noCsrf)).status, 403, 'no CSRF token: refused');
  assert.equal((await autoLoginStatus('acme-vera')).status, 403, 'still paused');
  res = await jar.postForm('/account', fields);
  assert.equal(res.status, 200);
  assert.match(await res.text(), /may sign you in again/);
  assert.equal((await autoLoginStatus('acme-vera')).status, 303, 'confirmed: automatic login again');
  // jwt-bearer works again for what is still consented: openid (profile needs new consent).
  res = await grant();
  assert.equal(res.status, 400);
  assert.equal((await res.json()).error, 'invalid_scope', 'profile was consented with the old password');
});

// Login CSRF: an assertion made for the sender's own account, opened in someone else's browser
// (a forwarded URL, a form on another site), must never sign that browser in silently.

function sessionCookie(res) {
  return res.headers.getSetCookie().find((c) => /session=/.test(c)) ?? null;
}

async function assertAsksFirst(res, what) {
  assert.equal(res.status, 200, `${what}: the confirmation page`);
  assert.equal(res.headers.get('location'), null, `${what}: no redirect, to the partner or anywhere`);
  assert.equal(sessionCookie(res), null, `${what}: no session cookie`);
  const html = await res.text();
  assert.match(html, /<strong>Acme Learning<\/strong> wants to sign you in as <strong>LENA<\/strong>\. Is this you\?/, what);
  return html;
}

test('auto_login_by_get_asks_first_and_starts_no_session', async () => {
  // lena is linked as acme-lena. A forwarded URL opened in another browser.
  const jar = new CookieJar(w.url);
  const res = await jar.fetch(`/login/auto?${new URLSearchParams({ assertion: loginAssertion('acme-lena'), return_to: '/account' })}`);
  const html = await assertAsksFirst(res, 'GET');
  assert.match(html, /No, this is not me/);
  assert.ok(![...jar.cookies.keys()].some((k) => k.includes('session')), 'no session in the jar');
  assert.equal((await jar.fetch('/account')).status, 302, 'not signed in: the account page asks to sign in');
  // Even with the partner's Origin, a GET is not the partner's page posting.
  await assertAsksFirst(await new CookieJar(w.url).fetch(`/login/auto?${new URLSearchParams({ assertion: loginAssertion('acme-lena') })}`, { headers: { origin: ORIGIN } }), 'GET with Origin');
});

test('auto_login_posted_from_another_origin_or_without_one_asks_first', async () => {
  for (const [what, origin] of [
    ['a form on another site', 'https://evil.example'],
    ['suffix trick', 'https://app.acme.example.evil.example'],
    ["another partner's origin", 'https://app.beta.example'],
    ['opaque origin', 'null'],
    ['no Origin header', null],
  ]) {
    const jar = new CookieJar(w.url);
    await assertAsksFirst(await postAutoLogin(jar, { assertion: loginAssertion('acme-lena'), return_to: '/account' }, origin), what);
    assert.equal((await jar.fetch('/account')).status, 302, `${what}: not signed in`);
  }
});

test('auto_login_confirmation_needs_this_browsers_csrf_cookie_and_signs_in_once', async () => {
  const assertion = loginAssertion('acme-lena');
  const jar = new CookieJar(w.url);
  const html = await assertAsksFirst(await postAutoLogin(jar, { assertion, return_to: '/account' }, 'https://evil.example'), 'foreign post');
  const fields = formFields(html);
  assert.equal(fields.assertion, assertion, 'the form carries the assertion');
  assert.ok(fields.csrf, 'and our CSRF token');

  // The form's fields without this browser's CSRF cookie (another browser, another site): refused.
  let res = await new CookieJar(w.url).postForm('/login/auto', { ...fields, decision: 'yes' });
  assert.equal(res.status, 403);
  assert.equal(sessionCookie(res), null);
  assert.match(await res.text(), /This form has expired or was not sent from this browser/);
  // A wrong token with the cookie: refused.
  res = await jar.postForm('/login/auto', { ...fields, csrf: 'x'.repeat(43), decision: 'yes' });
  assert.equal(res.status, 403);
  assert.equal(sessionCookie(res), null);
  // Without the token at all it is no confirmation: the question again, no session.
  const { csrf, ...noCsrf } = fields;
  await assertAsksFirst(await jar.postForm('/login/auto', { ...noCsrf, decision: 'yes' }), 'no csrf field');
  // "No": nothing happens.
  res = await jar.postForm('/login/auto', { ...fields, decision: 'no' });
  assert.equal(res.status, 200);
  assert.equal(sessionCookie(res), null);
  assert.match(await res.text(), /You were not signed in/);

  // Confirmed, in parallel: exactly one sign-in, to where the request asked.
  const results = await Promise.all(Array.from({ length: 10 }, () => jar.postForm('/login/auto', { ...fields, decision: 'yes' })));
  const statuses = results.map((r) => r.status);
  assert.equal(statuses.filter((s) => s === 303).length, 1, `statuses ${statuses}`);
  assert.equal(statuses.filter((s) => s === 403).length, 9, `statuses ${statuses}`);
  const won = results.find((r) => r.status === 303);
  assert.equal(won.headers.get('location'), `${w.url}/account`);
  assert.ok(sessionCookie(won), 'a session');
  const account = await jar.fetch('/account');
  assert.equal(account.status, 200);
  assert.match(await account.text(), /Signed in as <strong>LENA<\/strong>/);

  // The assertion stays single-use, whichever way it comes back.
  res = await jar.postForm('/login/auto', { ...fields, decision: 'yes' });
  assert.match(await assertRefusedPage(res, 'confirmed again'), /already used/);
  assert.match(await assertRefusedPage(await postAutoLogin(null, { assertion }), 'posted by the partner'), /already used/);
  assert.match(await assertRefusedPage(await fetch(`${w.url}/login/auto?${new URLSearchParams({ assertion })}`, { redirect: 'manual' }), 'by GET'), /already used/);
});

test('auto_login_confirmation_continues_the_authorization_request_it_carries', async () => {
  const client = await (await w.admin('/partners/acme/clients', {
    method: 'POST',
    body: { name: 'Acme Confirm', redirect_uris: [`${ORIGIN}/cb`], scopes: ['openid'] },
  })).json();
  const jar = new CookieJar(w.url);
  const request = {
    response_type: 'code', client_id: client.client_id, redirect_uri: `${ORIGIN}/cb`, scope: 'openid', state: 'confirm',
    code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256',
  };
  const html = await assertAsksFirst(await jar.fetch(`/login/auto?${new URLSearchParams({ assertion: loginAssertion('acme-lena'), ...request })}`), 'GET with a request');
  const res = await jar.postForm('/login/auto', { ...formFields(html), decision: 'yes' });
  assert.equal(res.status, 303);
  const next = new URL(res.headers.get('location'));
  assert.equal(next.pathname, '/oauth2/authorize');
  for (const [k, v] of Object.entries(request)) assert.equal(next.searchParams.get(k), v, k);
  for (const k of ['assertion', 'csrf', 'decision']) assert.equal(next.searchParams.get(k), null, `${k} is not passed along`);
});

test('auto_login_confirmation_page_escapes_the_partners_and_users_words', async () => {
  const origin = 'https://app.words.example';
  const wordsKey = generateJwk('EdDSA');
  const put = await w.admin('/partners/words', {
    method: 'PUT',
    body: { name: 'Words <script>alert(1)</script> & "Co"', origins: [origin], jwks: { keys: [publicJwk(wordsKey)] } },
  });
  assert.equal(put.status, 201);
  await w.admin('/users/tess', { method: 'PUT', body: { password: PASSWORD, name: 'Tess <img src=x onerror=alert(2)>' } });
  const own = new CookieJar(w.url);
  await login(own, 'tess');
  const request = linkRequest({ iss: origin, sub: 'words-tess', return_to: `${origin}/linked` }, { kid: wordsKey.kid }, wordsKey);
  const res0 = await link(own, request, 'allow', { jwk: wordsKey });
  assert.ok(res0.linkToken, 'linked');

  const now = Math.floor(Date.now() / 1000);
  const assertion = sign(wordsKey, { alg: 'EdDSA', kid: wordsKey.kid, typ: LOGIN_ASSERTION_TYP }, { iss: origin, aud: w.url, sub: 'words-tess', jti: randomUUID(), iat: now, exp: now + 60 });
  const res = await new CookieJar(w.url).fetch(`/login/auto?${new URLSearchParams({ assertion })}`);
  assert.equal(res.status, 200);
  assert.equal(sessionCookie(res), null);
  const html = await res.text();
  assert.doesNotMatch(html, /<script>alert|<img src=x/);
  assert.match(html, /<strong>Words &lt;script&gt;alert\(1\)&lt;\/script&gt; &amp; &quot;Co&quot;<\/strong> wants to sign you in as <strong>Tess &lt;img src=x onerror=alert\(2\)&gt;<\/strong>\. Is this you\?/);
});

// Outbound fetches of a partner's jwks_uri: only where the partner registered, bounded, and not
// repeated while the endpoint keeps failing.

/** A local HTTP server (loopback origins are allowed for tests) that counts its requests. */
async function serve(handler) {
  const http = await import('node:http');
  const server = http.createServer((req, res) => {
    server.hits += 1;
    handler(req, res);
  });
  server.hits = 0;
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  server.origin = `http://127.0.0.1:${server.address().port}`;
  server.stop = () => {
    server.closeAllConnections();
    return new Promise((r) => server.close(r));
  };
  return server;
}

/** A partner whose keys are at `jwks_uri`, and a link request that names it (signed by `jwk`). */
async function remotePartner(id, server, jwk) {
  const put = await w.admin(`/partners/${id}`, {
    method: 'PUT',
    body: { name: `Remote ${id}`, origins: [server.origin], jwks_uri: `${server.origin}/jwks.json` },
  });
  assert.equal(put.status, 201);
  return () => linkRequest({ iss: server.origin, return_to: `${server.origin}/done`, sub: `${id}-user` }, { kid: jwk.kid }, jwk);
}

async function assertKeysRefused(res, what) {
  assert.equal(res.status, 403, `${what}: status`);
  assert.match(await assertRefusedPage(res, what), /The partner&#39;s keys could not be fetched/, what);
}

test('jwks_uri_redirect_is_not_followed', async () => {
  const elsewhere = await serve((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ keys: [publicJwk(otherKey)] }));
  });
  const partner = await serve((req, res) => {
    res.writeHead(302, { location: `${elsewhere.origin}/jwks.json` });
    res.end();
  });
  try {
    const request = await remotePartner('redirected', partner, otherKey);
    await assertKeysRefused(await fetch(`${w.url}/link?request=${encodeURIComponent(request())}`, { redirect: 'manual' }), 'redirected jwks_uri');
    assert.equal(partner.hits, 1, 'the registered jwks_uri was asked');
    assert.equal(elsewhere.hits, 0, 'the redirect target never sees a request');
  } finally {
    await partner.stop();
    await elsewhere.stop();
  }
});

test('jwks_uri_fetch_is_bounded_in_size_and_time', async () => {
  const big = await serve((req, res) => {
    // Over 64 KiB, without a declared length: cut off while reading.
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write(`{"keys":[],"padding":"${'x'.repeat(70 * 1024)}`);
    res.end('"}');
  });
  const slow = await serve((req, res) => {
    // Headers at once, then a body that never ends.
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write('{"keys":[');
  });
  try {
    const bigRequest = await remotePartner('bigkeys', big, otherKey);
    await assertKeysRefused(await fetch(`${w.url}/link?request=${encodeURIComponent(bigRequest())}`, { redirect: 'manual' }), 'over 64 KiB');
    const slowRequest = await remotePartner('slowkeys', slow, otherKey);
    const started = Date.now();
    await assertKeysRefused(await fetch(`${w.url}/link?request=${encodeURIComponent(slowRequest())}`, { redirect: 'manual' }), 'a body that never ends');
    const took = Date.now() - started;
    assert.ok(took >= 2500 && took < 6000, `cut off by the 3 s time-out (took ${took} ms)`);
  } finally {
    await big.stop();
    await slow.stop();
  }
});

test('failing_jwks_uri_is_fetched_once_per_back_off_however_many_forged_requests', async () => {
  const failing = await serve((req, res) => {
    // Slow to fail, so that concurrent requests find the fetch still under way.
    setTimeout(() => {
      res.writeHead(500);
      res.end('down');
    }, 300);
  });
  try {
    const forged = await remotePartner('failing', failing, generateJwk('EdDSA'));
    const open = (r) => fetch(`${w.url}/link?request=${encodeURIComponent(r)}`, { redirect: 'manual' });
    // Forged requests all at once, then one after another: one fetch between them.
    const parallel = await Promise.all(Array.from({ length: 20 }, () => open(forged())));
    for (const [i, res] of parallel.entries()) await assertKeysRefused(res, `parallel ${i}`);
    assert.equal(failing.hits, 1, 'concurrent requests wait for one fetch');
    for (let i = 0; i < 10; i++) await assertKeysRefused(await open(forged()), `sequential ${i}`);
    // The token endpoint gives its own refusal for the same cause (a 400, not a 5xx).
    const svc = await (await w.admin('/partners/failing/clients', {
      method: 'POST',
      body: { name: 'Failing Server', grant_types: ['urn:ietf:params:oauth:grant-type:jwt-bearer'], scopes: ['openid'] },
    })).json();
    const now = Math.floor(Date.now() / 1000);
    const stranger = generateJwk('EdDSA');
    const res = await fetch(`${w.url}/oauth2/token`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from(`${svc.client_id}:${svc.client_secret}`).toString('base64')}`,
      },
      body: new URLSearchParams({
        grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer',
        assertion: sign(stranger, { alg: 'EdDSA', kid: stranger.kid, typ: 'JWT' }, { iss: failing.origin, aud: w.url, sub: 'x', jti: randomUUID(), iat: now, exp: now + 60 }),
      }),
    });
    assert.equal(res.status, 400);
    const body = await res.json();
    assert.equal(body.error, 'invalid_grant');
    assert.match(body.error_description, /keys could not be fetched/);
    assert.equal(body.access_token, undefined);
    assert.equal(failing.hits, 1, `one fetch for ${20 + 10 + 1} forged requests`);

    // After the first back-off (5 s) the endpoint is tried once more, then left alone for 10 s.
    await new Promise((r) => setTimeout(r, 5200));
    await assertKeysRefused(await open(forged()), 'after the back-off');
    assert.equal(failing.hits, 2, 'tried again once the back-off was over');
    for (let i = 0; i < 5; i++) await assertKeysRefused(await open(forged()), `second back-off ${i}`);
    assert.equal(failing.hits, 2, 'and not again during the doubled back-off');
  } finally {
    await failing.stop();
  }
});
