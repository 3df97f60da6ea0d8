// Account linking: a partner's signed link request, a recent login, consent, one link, and a
// link token back. Every rule has a test that tries to break it; a refused request shows an
// error page and never redirects.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomUUID } from 'node:crypto';
import { startWorker, addPartner } from './harness.mjs';
import { CookieJar, browserFlow, formFields, pkce, verifyJwt } from './oauth.mjs';
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
    return_to: `${ORIGIN}/linked`, state: 'link-state', ...overrides,
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

/** Opens the link URL in a logged-in browser and answers the consent page. */
async function link(jar, request, decision = 'allow') {
  const page = await jar.fetch(`/link?request=${encodeURIComponent(request)}`);
  assert.equal(page.status, 200, 'the consent page');
  const html = await page.text();
  assert.match(html, /Acme Learning/);
  return jar.postForm('/link', { ...formFields(html), decision });
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
  res = await jar.postForm('/link', { ...formFields(html), decision: 'allow' });
  assert.equal(res.status, 303);
  const back = new URL(res.headers.get('location'));
  assert.equal(back.origin + back.pathname, `${ORIGIN}/linked`);
  assert.equal(back.searchParams.get('state'), 'link-state');
  const jwks = await (await w.fetch('/.well-known/jwks.json')).json();
  const token = verifyJwt(back.searchParams.get('link_token'), jwks);
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

test('auto_login_with_a_linked_account_starts_a_session', async () => {
  // lena is linked as acme-lena by the first test.
  const jar = new CookieJar(w.url);
  const res = await jar.fetch(`/login/auto?${new URLSearchParams({ assertion: loginAssertion('acme-lena'), return_to: '/account' })}`);
  assert.equal(res.status, 302);
  assert.equal(res.headers.get('location'), `${w.url}/account`);
  assert.ok([...jar.cookies.keys()].some((k) => k.includes('session')), 'a session without credentials');
});

test('auto_login_continues_an_authorization_request', async () => {
  const client = await (await w.admin('/partners/acme/clients', {
    method: 'POST',
    body: { name: 'Acme Auto', redirect_uris: [`${ORIGIN}/cb`], scopes: ['openid', 'profile'] },
  })).json();
  const autoLogin = async (jar, scope) => {
    const params = new URLSearchParams({
      assertion: loginAssertion('acme-lena'), response_type: 'code', client_id: client.client_id,
      redirect_uri: `${ORIGIN}/cb`, scope, state: 'auto', code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
      code_challenge_method: 'S256',
    });
    const res = await jar.fetch(`/login/auto?${params}`);
    assert.equal(res.status, 302);
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
  const res = await jar.fetch(`/login/auto?${new URLSearchParams({ assertion: loginAssertion('acme-nobody') })}`);
  assert.equal(res.status, 403);
  assert.match(await res.text(), /not linked/);
  assert.equal(jar.cookies.size, 0);
});

test('auto_login_assertion_replay_and_bad_assertions_are_refused', async () => {
  const a = loginAssertion('acme-lena');
  const first = await fetch(`${w.url}/login/auto?${new URLSearchParams({ assertion: a })}`, { redirect: 'manual' });
  assert.equal(first.status, 302);
  const again = await fetch(`${w.url}/login/auto?${new URLSearchParams({ assertion: a })}`, { redirect: 'manual' });
  await assertRefusedPage(again, 'replay');

  const raced = loginAssertion('acme-lena');
  const results = await Promise.all(Array.from({ length: 20 }, () =>
    fetch(`${w.url}/login/auto?${new URLSearchParams({ assertion: raced })}`, { redirect: 'manual' })));
  assert.equal(results.filter((r) => r.status === 302).length, 1, `statuses ${results.map((r) => r.status)}`);

  const now = Math.floor(Date.now() / 1000);
  for (const [what, bad] of Object.entries({
    'lifetime over two minutes': loginAssertion('acme-lena', { exp: now + 600 }),
    expired: loginAssertion('acme-lena', { iat: now - 300, exp: now - 100 }),
    'wrong aud': loginAssertion('acme-lena', {}, 'https://other.example'),
    'another partner key': sign(otherKey, { alg: 'EdDSA', kid: key.kid, typ: LOGIN_ASSERTION_TYP }, { iss: ORIGIN, aud: w.url, sub: 'acme-lena', jti: randomUUID(), exp: now + 60 }),
    'return_to off the platform': null,
  })) {
    if (bad === null) {
      const res = await fetch(`${w.url}/login/auto?${new URLSearchParams({ assertion: loginAssertion('acme-lena'), return_to: 'https://evil.example/' })}`, { redirect: 'manual' });
      await assertRefusedPage(res, what);
      continue;
    }
    await assertRefusedPage(await fetch(`${w.url}/login/auto?${new URLSearchParams({ assertion: bad })}`, { redirect: 'manual' }), what);
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
  let res = await jar.fetch(`/login/auto?${new URLSearchParams({ assertion: loginAssertion('acme-lena'), return_to: '/account' })}`);
  assert.equal(res.status, 302, 'signed in automatically');
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
  assert.equal((await auto.fetch(`/login/auto?${new URLSearchParams({ assertion: loginAssertion('acme-rosa'), return_to: '/account' })}`)).status, 302);
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
    assert.equal((await jar.fetch(`/login/auto?${new URLSearchParams({ assertion: loginAssertion('acme-sami'), return_to: '/account' })}`)).status, 302);
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
  const auto = (assertion) => fetch(`${w.url}/login/auto?${new URLSearchParams({ assertion, return_to: '/account' })}`, { redirect: 'manual' });

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
  assert.equal(res.status, 302, 'a login assertion signs in');

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
  const auto = await fetch(`${w.url}/login/auto?${new URLSearchParams({ assertion: loginAssertion('acme-olga') })}`, { redirect: 'manual' });
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
  const auto = await fetch(`${w.url}/login/auto?${new URLSearchParams({ assertion: loginAssertion('acme-pavel') })}`, { redirect: 'manual' });
  assert.equal(auto.status, 403);
});

test('auto_login_never_reaches_a_new_account_reusing_a_linked_username', async () => {
  await w.admin('/users/quinn', { method: 'PUT', body: { password: PASSWORD, name: 'Quinn One' } });
  const jar = new CookieJar(w.url);
  await login(jar, 'quinn');
  assert.equal((await link(jar, linkRequest({ sub: 'acme-quinn' }))).status, 303);
  assert.equal((await w.admin('/users/quinn', { method: 'DELETE' })).status, 204);
  await w.admin('/users/quinn', { method: 'PUT', body: { password: PASSWORD, name: 'Quinn Two' } });
  const auto = await fetch(`${w.url}/login/auto?${new URLSearchParams({ assertion: loginAssertion('acme-quinn'), return_to: '/account' })}`, { redirect: 'manual' });
  assert.equal(auto.status, 403);
  assert.equal(auto.headers.get('set-cookie'), null, 'no session for the new person');
});

test('auto_login_by_post_and_refused_for_a_suspended_partner', async () => {
  // lena is linked as acme-lena; POST works like GET.
  const jar = new CookieJar(w.url);
  const res = await jar.postForm('/login/auto', { assertion: loginAssertion('acme-lena'), return_to: '/account' });
  assert.equal(res.status, 303);
  assert.equal(res.headers.get('location'), `${w.url}/account`);
  // A suspended partner's assertion is refused (sleepy is suspended, keyed with otherKey).
  const now = Math.floor(Date.now() / 1000);
  const suspended = sign(otherKey, { alg: 'EdDSA', kid: otherKey.kid, typ: LOGIN_ASSERTION_TYP }, { iss: 'https://id.sleepy.example', aud: w.url, sub: 'x', jti: randomUUID(), exp: now + 60 });
  const html = await assertRefusedPage(await fetch(`${w.url}/login/auto?${new URLSearchParams({ assertion: suspended })}`, { redirect: 'manual' }), 'suspended');
  assert.match(html, /suspended/);
});
