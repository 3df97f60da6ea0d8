// The pages a person uses, driven in a real headless Chromium: sign in and allow, deny, a wrong
// password, and a form posted without its CSRF token. The partner's callback is intercepted
// (there is no network), and the code is exchanged to prove the flow completed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { startWorker } from './harness.mjs';
import { pkce, basicAuth, confirmLink, verifyJwt } from './oauth.mjs';
import { randomUUID } from 'node:crypto';
import { LINK_REQUEST_TYP, LOGIN_ASSERTION_TYP, generateJwk, publicJwk, signJwt } from '../../scripts/lib/jwk.mjs';

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const partnerKey = generateJwk('EdDSA');
const REDIRECT = 'https://app.acme.example/callback';
/** A second origin of the partner, for its page that posts a login assertion (never listened on). */
const PARTNER_PAGE = 'http://localhost:4999';
const PASSWORD = 'correct horse battery staple';
/** A 1x1 PNG, the partner's logo. */
const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==', 'base64');
let w;
let client;
let browser;

before(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`Chromium is missing at ${CHROMIUM}: run scripts/setup.sh --browser`);
  w = await startWorker();
  // The partner's public key is set from the start: records are cached at the edge for up to
  // GATE_CACHE_TTL_SECONDS, so a later change would not be seen at once.
  await w.admin('/partners/acme', {
    method: 'PUT',
    body: { name: 'Acme Learning', origins: ['https://app.acme.example', PARTNER_PAGE], jwks: { keys: [publicJwk(partnerKey)] } },
  });
  client = await (await w.admin('/partners/acme/clients', {
    method: 'POST',
    body: { name: 'Acme Classroom', redirect_uris: [REDIRECT], scopes: ['openid', 'profile', 'email'] },
  })).json();
  await w.admin('/users/pupil7', { method: 'PUT', body: { password: PASSWORD, name: 'Pupil Seven', email: 'p7@school.example' } });
  // Playwright gives every launch a fresh, temporary profile.
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync',
    ],
  });
});
after(async () => {
  await browser?.close();
  await w?.stop();
});

/** A fresh browser context whose requests to the partner are answered locally and recorded. */
async function newPage() {
  const context = await browser.newContext();
  const page = await context.newPage();
  const callbacks = [];
  await page.route('https://app.acme.example/**', (route) => {
    const url = new URL(route.request().url());
    callbacks.push(url);
    if (url.pathname === '/logo.png') return route.fulfill({ status: 200, contentType: 'image/png', body: PNG });
    route.fulfill({ status: 200, contentType: 'text/html', body: '<p>partner callback</p>' });
  });
  return { page, context, callbacks };
}

// prompt=consent: the consent page every time, although the first test's consent is remembered.
function authorizeUrl(challenge, state = 'browser-state') {
  return `${w.url}/oauth2/authorize?${new URLSearchParams({
    response_type: 'code', client_id: client.client_id, redirect_uri: REDIRECT, scope: 'openid profile',
    state, nonce: 'browser-nonce', code_challenge: challenge, code_challenge_method: 'S256', prompt: 'consent',
  })}`;
}

async function signIn(page, username, password) {
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

test('browser_login_page_shows_the_apps_logo_from_its_partners_origin_and_its_links', async () => {
  const app = await (await w.admin('/partners/acme/clients', {
    method: 'POST',
    body: {
      name: 'Acme Gallery', redirect_uris: [REDIRECT], scopes: ['openid'],
      logo_uri: 'https://app.acme.example/logo.png', policy_uri: 'https://app.acme.example/privacy', tos_uri: 'https://terms.example/acme',
    },
  })).json();
  assert.equal(app.logo_uri, 'https://app.acme.example/logo.png');
  const { page, context, callbacks } = await newPage();
  const violations = [];
  page.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) violations.push(m.text()); });
  try {
    const { challenge } = pkce();
    const url = `${w.url}/oauth2/authorize?${new URLSearchParams({
      response_type: 'code', client_id: app.client_id, redirect_uri: REDIRECT, scope: 'openid', state: 's', code_challenge: challenge, code_challenge_method: 'S256',
    })}`;
    const res = await page.goto(url);
    assert.equal(await page.title(), 'Sign in');
    assert.match(res.headers()['content-security-policy'], /img-src 'self' https:\/\/app\.acme\.example;/);
    assert.match(await page.textContent('main'), /to continue to Acme Gallery/);
    const logo = page.locator('main img');
    await logo.waitFor();
    await page.waitForFunction(() => document.querySelector('main img')?.complete);
    assert.equal(await logo.evaluate((img) => img.naturalWidth), 1, 'the logo loaded under the page CSP');
    assert.ok(callbacks.some((u) => u.pathname === '/logo.png'));
    assert.equal(await page.getByRole('link', { name: 'privacy policy' }).getAttribute('href'), 'https://app.acme.example/privacy');
    assert.equal(await page.getByRole('link', { name: 'terms of service' }).getAttribute('href'), 'https://terms.example/acme');
    assert.equal(await page.getByRole('link', { name: 'terms of service' }).getAttribute('rel'), 'noopener noreferrer');
    assert.deepEqual(violations, []);
  } finally {
    await context.close();
  }
  // A logo off the partner's origins is refused when the client is registered.
  const off = await w.admin('/partners/acme/clients', {
    method: 'POST',
    body: { name: 'Tracker', redirect_uris: [REDIRECT], logo_uri: 'https://tracker.example/pixel.png' },
  });
  assert.equal(off.status, 400);
  assert.equal((await off.json()).field, 'logo_uri');
});

test('browser_login_and_allow_completes_the_code_flow', async () => {
  const { page, context, callbacks } = await newPage();
  try {
    const { verifier, challenge } = pkce();
    await page.goto(authorizeUrl(challenge));
    assert.equal(await page.title(), 'Sign in');
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'username', 'the username field has focus');
    await signIn(page, 'pupil7', PASSWORD);
    await page.getByRole('heading', { name: /Allow Acme Classroom/ }).waitFor();
    const consentText = await page.textContent('main');
    assert.match(consentText, /Acme Learning/);
    assert.match(consentText, /https:\/\/app\.acme\.example/);
    assert.match(consentText, /See your name and username/);
    await page.getByRole('button', { name: 'Allow' }).click();
    await page.waitForURL(/app\.acme\.example\/callback/);
    const cb = callbacks.at(-1);
    assert.equal(cb.searchParams.get('state'), 'browser-state');
    assert.equal(cb.searchParams.get('iss'), w.url);
    const res = await fetch(`${w.url}/oauth2/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(client.client_id, client.client_secret) },
      body: new URLSearchParams({ grant_type: 'authorization_code', code: cb.searchParams.get('code'), redirect_uri: REDIRECT, code_verifier: verifier }),
    });
    assert.equal(res.status, 200);
    const jwks = await (await fetch(`${w.url}/.well-known/jwks.json`)).json();
    const tokens = await res.json();
    const id = verifyJwt(tokens.id_token, jwks);
    assert.equal(id.nonce, 'browser-nonce');
    const info = await (await fetch(`${w.url}/oauth2/userinfo`, { headers: { authorization: `Bearer ${tokens.access_token}` } })).json();
    assert.equal(info.name, 'Pupil Seven');
    // The session cookie is HttpOnly and SameSite=Lax.
    const session = (await context.cookies()).find((c) => c.name.includes('session'));
    assert.ok(session.httpOnly);
    assert.equal(session.sameSite, 'Lax');
    if (process.env.EDGEWARD_SCREENSHOTS) await page.screenshot({ path: path.join(process.env.EDGEWARD_SCREENSHOTS, 'callback.png') });
  } finally {
    await context.close();
  }
});

test('browser_deny_returns_access_denied', async () => {
  const { page, context, callbacks } = await newPage();
  try {
    await page.goto(authorizeUrl(pkce().challenge, 'deny-state'));
    await signIn(page, 'pupil7', PASSWORD);
    await page.getByRole('button', { name: 'Deny' }).click();
    await page.waitForURL(/app\.acme\.example\/callback/);
    const cb = callbacks.at(-1);
    assert.equal(cb.searchParams.get('error'), 'access_denied');
    assert.equal(cb.searchParams.get('state'), 'deny-state');
    assert.equal(cb.searchParams.get('code'), null);
  } finally {
    await context.close();
  }
});

test('browser_wrong_password_shows_the_error_and_stays', async () => {
  const { page, context, callbacks } = await newPage();
  try {
    await page.goto(authorizeUrl(pkce().challenge));
    await signIn(page, 'pupil7', 'not the password');
    const alert = page.getByRole('alert');
    await alert.waitFor();
    assert.match(await alert.textContent(), /username or password is not right/);
    assert.match(page.url(), /\/login$/);
    assert.equal(await page.getByLabel('Username').inputValue(), 'pupil7', 'the username is kept');
    assert.equal(callbacks.length, 0);
    if (process.env.EDGEWARD_SCREENSHOTS) await page.screenshot({ path: path.join(process.env.EDGEWARD_SCREENSHOTS, 'login-error.png') });
  } finally {
    await context.close();
  }
});

test('browser_form_posted_without_its_csrf_token_is_refused', async () => {
  const { page, context, callbacks } = await newPage();
  try {
    await page.goto(authorizeUrl(pkce().challenge));
    // Tamper as a cross-site form would: no CSRF token.
    await page.evaluate(() => document.querySelector('input[name="csrf"]').remove());
    await signIn(page, 'pupil7', PASSWORD);
    await page.getByRole('alert').waitFor();
    assert.match(await page.textContent('main'), /expired or was not sent from this browser/);
    assert.ok(!(await page.context().cookies()).some((c) => c.name.includes('session')), 'no session');
    // The consent form likewise.
    await page.goto(authorizeUrl(pkce().challenge));
    await signIn(page, 'pupil7', PASSWORD);
    await page.getByRole('button', { name: 'Allow' }).waitFor();
    if (process.env.EDGEWARD_SCREENSHOTS) await page.screenshot({ path: path.join(process.env.EDGEWARD_SCREENSHOTS, 'consent.png') });
    await page.evaluate(() => document.querySelector('input[name="csrf"]').remove());
    await page.getByRole('button', { name: 'Allow' }).click();
    await page.getByRole('alert').waitFor();
    assert.equal(callbacks.length, 0, 'no code was issued');
  } finally {
    await context.close();
  }
});

const partnerJwt = (typ, payload) => signJwt(partnerKey, { alg: 'EdDSA', kid: partnerKey.kid, typ }, payload);

test('browser_link_then_automatic_login_posted_by_the_partner_or_confirmed', async () => {
  const now = Math.floor(Date.now() / 1000);
  const request = partnerJwt(LINK_REQUEST_TYP, {
    iss: 'https://app.acme.example', aud: w.url, sub: 'acme-pupil7', jti: randomUUID(), iat: now, exp: now + 240,
    return_to: 'https://app.acme.example/linked', state: 'browser-link', account_label: 'pupil7 at Acme',
  });
  const { page, context, callbacks } = await newPage();
  try {
    await page.goto(`${w.url}/link?request=${encodeURIComponent(request)}`);
    assert.equal(await page.title(), 'Sign in', 'a login at the platform comes first');
    await signIn(page, 'pupil7', PASSWORD);
    await page.getByRole('heading', { name: /Link your Acme Learning account/ }).waitFor();
    await page.getByText('pupil7 at Acme').waitFor();
    if (process.env.EDGEWARD_SCREENSHOTS) await page.screenshot({ path: path.join(process.env.EDGEWARD_SCREENSHOTS, 'link-consent.png') });
    await page.getByRole('button', { name: 'Allow' }).click();
    await page.waitForURL(/app\.acme\.example\/linked/);
    const cb = callbacks.at(-1);
    assert.equal(cb.searchParams.get('state'), 'browser-link');
    assert.equal(cb.searchParams.get('link_token'), null, 'no link token in the browser');
    // The partner's server checked `state` against its session; it confirms the link.
    const confirmed = await confirmLink(w.url, partnerKey, request, cb.href);
    assert.equal(confirmed.status, 200);
    const jwks = await (await fetch(`${w.url}/.well-known/jwks.json`)).json();
    const token = verifyJwt((await confirmed.json()).link_token, jwks);
    assert.equal(token.partner_sub, 'acme-pupil7');
    assert.equal(token.aud, 'https://app.acme.example');
  } finally {
    await context.close();
  }

  // Automatic login in a fresh browser, as the partner's page posts it: no password, straight to
  // the account page.
  const fresh = await newPage();
  try {
    const assertion = partnerJwt(LOGIN_ASSERTION_TYP, { iss: 'https://app.acme.example', aud: w.url, sub: 'acme-pupil7', jti: randomUUID(), exp: now + 100 });
    // The partner's page on its loopback origin: from an https page to our http test issuer, a
    // browser sends `Origin: null` (a downgrade, Fetch §3.1), which would rightly ask first.
    await fresh.page.route(`${PARTNER_PAGE}/start`, (route) => route.fulfill({
      status: 200,
      contentType: 'text/html',
      body: `<form method="post" action="${w.url}/login/auto"><input type="hidden" name="assertion" value="${assertion}">`
        + '<input type="hidden" name="return_to" value="/account"><button type="submit">Continue</button></form>',
    }));
    await fresh.page.goto(`${PARTNER_PAGE}/start`);
    await fresh.page.getByRole('button', { name: 'Continue' }).click();
    await fresh.page.waitForURL(`${w.url}/account`);
    assert.equal(await fresh.page.title(), 'Your account');
    const main = await fresh.page.textContent('main');
    assert.match(main, /Pupil Seven/);
    assert.match(main, /Acme Learning/);
    if (process.env.EDGEWARD_SCREENSHOTS) await fresh.page.screenshot({ path: path.join(process.env.EDGEWARD_SCREENSHOTS, 'account.png') });
  } finally {
    await fresh.context.close();
  }

  // A login URL opened in another browser (forwarded, say): asked first, signed in only on Yes.
  const other = await newPage();
  try {
    const assertion = partnerJwt(LOGIN_ASSERTION_TYP, { iss: 'https://app.acme.example', aud: w.url, sub: 'acme-pupil7', jti: randomUUID(), exp: now + 100 });
    await other.page.goto(`${w.url}/login/auto?${new URLSearchParams({ assertion, return_to: '/account' })}`);
    assert.equal(await other.page.title(), 'Is this you?');
    assert.match(await other.page.textContent('main'), /Acme Learning wants to sign you in as Pupil Seven\. Is this you\?/);
    if (process.env.EDGEWARD_SCREENSHOTS) await other.page.screenshot({ path: path.join(process.env.EDGEWARD_SCREENSHOTS, 'auto-login-confirm.png') });
    assert.equal((await other.context.cookies()).some((c) => c.name.includes('session')), false, 'no session before the answer');
    await other.page.getByRole('button', { name: 'Yes, continue as Pupil Seven' }).click();
    await other.page.waitForURL(`${w.url}/account`);
    assert.equal(await other.page.title(), 'Your account');
  } finally {
    await other.context.close();
  }
});
