// The client libraries partners build on, unchanged and on their defaults, against the built
// Worker: openid-client 6 (Auth.js 5; it sends the client secret in the body), openid-client 5
// (next-auth 4 and its passport strategy; Basic authentication, RS256 ID tokens unless told
// otherwise) and passport-openidconnect (no PKCE, no nonce: a confidential client registered
// with `require_pkce: false`). Each does what it supports of discovery, the code flow, the ID
// token against the JWKS, userinfo, refresh, revocation, introspection and logout.
//
// The one option given that is not a default: openid-client 6 talks to plain http only when told
// (`allowInsecureRequests`), and the Worker under test is on http://127.0.0.1. A deployment's
// issuer is https, where the library needs nothing.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import http from 'node:http';
import * as oc6 from 'openid-client';
import { startWorker, addPartner } from './harness.mjs';
import { CookieJar, decodeJwt, formFields, verifyJwt } from './oauth.mjs';

const require = createRequire(import.meta.url);
const oc5 = require('openid-client-5');
const express = require('express');
const session = require('express-session');
const passport = require('passport');
const OpenIDConnectStrategy = require('passport-openidconnect');

const PASSWORD = 'correct horse battery staple';
const SITE = 'https://app.acme.example';
const REDIRECT = `${SITE}/callback`;
const BYE = `${SITE}/signed-out`;
let w;
let jwks;

before(async () => {
  w = await startWorker();
  await addPartner(w, 'acme', [SITE]);
  await w.admin('/users/ada', { method: 'PUT', body: { password: PASSWORD, name: 'Ada Pupil', email: 'ada@school.example', email_verified: true } });
  jwks = await (await w.fetch('/.well-known/jwks.json')).json();
});
after(() => w?.stop());

async function register(partner, body) {
  const res = await w.admin(`/partners/${partner}/clients`, {
    method: 'POST',
    body: { name: 'App', scopes: ['openid', 'profile', 'email'], grant_types: ['authorization_code', 'refresh_token'], ...body },
  });
  assert.equal(res.status, 201, await res.clone().text());
  return res.json();
}

/**
 * The person's part: from the authorization URL a library built, through our login and consent
 * pages, to the redirect back to the app. Answers the URL the browser was sent to.
 */
async function signIn(jar, url, appOrigin) {
  let res = await jar.fetch(String(url));
  for (let hops = 0; hops < 8; hops++) {
    if (res.status === 302 || res.status === 303) {
      const loc = new URL(res.headers.get('location'), w.url);
      if (loc.origin === appOrigin) return loc;
      res = await jar.fetch(loc.href);
      continue;
    }
    const html = await res.text();
    assert.equal(res.status, 200, html.slice(0, 300));
    if (html.includes('name="password"')) res = await jar.postForm('/login', { ...formFields(html), username: 'ada', password: PASSWORD });
    else if (html.includes('name="decision"')) res = await jar.postForm('/oauth2/authorize', { ...formFields(html), decision: 'allow' });
    else throw new Error(`unexpected page: ${html.slice(0, 300)}`);
  }
  throw new Error('too many hops');
}

/** Follows an end-session URL in the browser; answers where it was sent. */
async function signOut(jar, url) {
  const res = await jar.fetch(String(url));
  assert.equal(res.status, 302, `logout redirects back: ${res.status}`);
  return new URL(res.headers.get('location'));
}

test('client_library_openid_client_6_on_its_defaults', async () => {
  const client = await register('acme', { redirect_uris: [REDIRECT], post_logout_redirect_uris: [BYE] });
  const config = await oc6.discovery(new URL(w.url), client.client_id, client.client_secret, undefined, { execute: [oc6.allowInsecureRequests] });
  const verifier = oc6.randomPKCECodeVerifier();
  const state = oc6.randomState();
  const nonce = oc6.randomNonce();
  const url = oc6.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT, scope: 'openid profile email', state, nonce,
    code_challenge: await oc6.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
  });
  const jar = new CookieJar(w.url);
  const callback = await signIn(jar, url, SITE);
  const tokens = await oc6.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true });
  const claims = tokens.claims();
  assert.equal(claims.iss, w.url);
  assert.equal(claims.aud, client.client_id);
  assert.equal(verifyJwt(tokens.id_token, jwks).sub, claims.sub, 'the ID token verifies against the JWKS');
  const info = await oc6.fetchUserInfo(config, tokens.access_token, claims.sub);
  assert.equal(info.name, 'Ada Pupil');
  assert.equal(info.email_verified, true);
  const intro = await oc6.tokenIntrospection(config, tokens.access_token);
  assert.equal(intro.active, true);
  const refreshed = await oc6.refreshTokenGrant(config, tokens.refresh_token);
  assert.ok(refreshed.access_token && refreshed.refresh_token !== tokens.refresh_token, 'rotated');
  await oc6.tokenRevocation(config, refreshed.refresh_token);
  await assert.rejects(oc6.refreshTokenGrant(config, refreshed.refresh_token), (e) => e.error === 'invalid_grant');
  const back = await signOut(jar, oc6.buildEndSessionUrl(config, { id_token_hint: tokens.id_token, post_logout_redirect_uri: BYE, state: 'bye-6' }));
  assert.equal(back.origin + back.pathname, BYE);
  assert.equal(back.searchParams.get('state'), 'bye-6');
});

test('client_library_openid_client_5_on_its_defaults', async () => {
  const client = await register('acme', { redirect_uris: [REDIRECT], post_logout_redirect_uris: [BYE] });
  const issuer = await oc5.Issuer.discover(w.url);
  const app = new issuer.Client({ client_id: client.client_id, client_secret: client.client_secret, redirect_uris: [REDIRECT], post_logout_redirect_uris: [BYE] });
  const verifier = oc5.generators.codeVerifier();
  const state = oc5.generators.state();
  const nonce = oc5.generators.nonce();
  const url = app.authorizationUrl({ scope: 'openid profile email', state, nonce, code_challenge: oc5.generators.codeChallenge(verifier), code_challenge_method: 'S256' });
  const jar = new CookieJar(w.url);
  const callback = await signIn(jar, url, SITE);
  const tokenSet = await app.callback(REDIRECT, app.callbackParams(callback.href), { code_verifier: verifier, state, nonce });
  assert.equal(decodeJwt(tokenSet.id_token).header.alg, 'RS256', 'what the library expects when the client names none');
  const claims = tokenSet.claims();
  assert.equal(claims.aud, client.client_id);
  const info = await app.userinfo(tokenSet.access_token);
  assert.equal(info.sub, claims.sub);
  assert.equal(info.email, 'ada@school.example');
  const intro = await app.introspect(tokenSet.access_token);
  assert.equal(intro.active, true);
  assert.equal(intro.client_id, client.client_id);
  const refreshed = await app.refresh(tokenSet.refresh_token);
  assert.equal(refreshed.claims().sub, claims.sub, 'the refreshed ID token names the same subject');
  await app.revoke(refreshed.refresh_token);
  await assert.rejects(app.refresh(refreshed.refresh_token), (e) => e.error === 'invalid_grant');
  const back = await signOut(jar, app.endSessionUrl({ id_token_hint: tokenSet.id_token, post_logout_redirect_uri: BYE, state: 'bye-5' }));
  assert.equal(back.origin + back.pathname, BYE);
  assert.equal(back.searchParams.get('state'), 'bye-5');
});

/** A partner's express app using passport-openidconnect on its defaults, on a loopback port. */
async function passportApp(meta, clientFor) {
  const app = express();
  app.use(session({ secret: 'test session secret', resave: false, saveUninitialized: false }));
  app.use(passport.initialize());
  app.use(passport.session());
  passport.serializeUser((user, done) => done(null, user));
  passport.deserializeUser((user, done) => done(null, user));
  const server = http.createServer(app);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = `http://127.0.0.1:${server.address().port}`;
  const client = await clientFor(origin);
  passport.use('edgeward', new OpenIDConnectStrategy({
    issuer: meta.issuer,
    authorizationURL: meta.authorization_endpoint,
    tokenURL: meta.token_endpoint,
    userInfoURL: meta.userinfo_endpoint,
    clientID: client.client_id,
    clientSecret: client.client_secret,
    callbackURL: `${origin}/cb`,
  }, (issuer, profile, done) => done(null, { issuer, id: profile.id })));
  app.get('/login', passport.authenticate('edgeward'));
  app.get('/cb', passport.authenticate('edgeward', { failureRedirect: '/failed', failureMessage: true }), (req, res) => res.redirect('/me'));
  app.get('/me', (req, res) => (req.user ? res.json(req.user) : res.status(401).end()));
  app.get('/failed', (req, res) => res.status(403).json({ messages: req.session.messages ?? [] }));
  return { origin, client, stop: () => new Promise((resolve) => server.close(resolve)) };
}

test('client_library_passport_openidconnect_on_its_defaults_without_pkce', async () => {
  const meta = await (await w.fetch('/.well-known/openid-configuration')).json();
  let partnerApp;
  const app = await passportApp(meta, async (origin) => {
    await addPartner(w, 'passport', [origin]);
    partnerApp = await register('passport', { redirect_uris: [`${origin}/cb`], require_pkce: false });
    return partnerApp;
  });
  try {
    const appJar = new CookieJar(app.origin);
    const start = await appJar.fetch('/login');
    assert.equal(start.status, 302);
    const authorize = new URL(start.headers.get('location'));
    assert.equal(authorize.searchParams.get('code_challenge'), null, 'the library sends no PKCE');
    const callback = await signIn(new CookieJar(w.url), authorize, app.origin);
    const done = await appJar.fetch(callback.pathname + callback.search);
    assert.equal(done.status, 302, `the app signed the user in: ${await done.clone().text()}`);
    assert.equal(done.headers.get('location'), '/me');
    const me = await (await appJar.fetch('/me')).json();
    assert.equal(me.issuer, w.url);
    assert.match(me.id, /^[A-Za-z0-9_-]+$/);
  } finally {
    await app.stop();
  }
  // The same library against a client that requires PKCE is refused at the authorization step.
  const strict = await register('passport', { redirect_uris: [`${new URL(partnerApp.redirect_uris[0]).origin}/cb`] });
  const res = await new CookieJar(w.url).fetch(`/oauth2/authorize?${new URLSearchParams({ response_type: 'code', client_id: strict.client_id, redirect_uri: strict.redirect_uris[0], scope: 'openid', state: 'x' })}`);
  assert.equal(new URL(res.headers.get('location')).searchParams.get('error'), 'invalid_request');
});
