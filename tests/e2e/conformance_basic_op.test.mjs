// The OpenID Foundation's Basic OP and Form Post OP test plans (oidcc-basic-certification-test-plan,
// oidcc-formpost-basic-certification-test-plan; static client, discovery), module by module, each
// test named after the module and checking what the module checks (tests/e2e/conformance.mjs
// mirrors the suite's common steps). The Form Post plan is the same modules with
// response_mode=form_post. The three modules of these plans that need a dynamically registered
// client (oidcc-idtoken-signature, oidcc-idtoken-unsigned,
// oidcc-request-uri-unsigned-supported-correctly-or-rejected-as-unsupported) are not in the
// static-client plan.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker, addPartner, sleep } from './harness.mjs';
import { CookieJar, pkce } from './oauth.mjs';
import { SuiteRp, randomValue } from './conformance.mjs';

const PASSWORD = 'conformance suite password';
const BASE = 'https://suite.example/test/a/edgeward';
let w;
let client;
let client2;

before(async () => {
  w = await startWorker();
  await addPartner(w, 'suite', ['https://suite.example']);
  const register = async () => (await w.admin('/partners/suite/clients', {
    method: 'POST',
    body: {
      name: 'Conformance suite', redirect_uris: [`${BASE}/callback`], post_logout_redirect_uris: [`${BASE}/post_logout_redirect`],
      scopes: ['openid', 'profile', 'email'], grant_types: ['authorization_code', 'refresh_token'], require_pkce: false,
    },
  })).json();
  client = await register();
  client2 = await register();
  await w.admin('/users/buffy', { method: 'PUT', body: { password: PASSWORD, name: 'Buffy Summers', email: 'buffy@suite.example', email_verified: true } });
});
after(() => w?.stop());

for (const mode of ['query', 'form_post']) {
  const plan = mode === 'query' ? 'basic' : 'formpost';
  const rp = () => new SuiteRp(w, { client, responseMode: mode, username: 'buffy', password: PASSWORD }).configure();
  const name = (module) => `${plan}_${module}`;

  test(name('oidcc-server'), async () => {
    const r = await rp();
    const { code, claims } = await r.happyFlow();
    assert.ok(code.length >= 16, 'EnsureMinimumAuthorizationCodeLength');
    const allowed = ['iss', 'sub', 'aud', 'exp', 'iat', 'auth_time', 'nonce', 'acr', 'amr', 'azp', 'at_hash', 'c_hash', 'nbf', 'jti', 'sid'];
    for (const k of Object.keys(claims)) assert.ok(allowed.includes(k), `EnsureIdTokenDoesNotContainNonRequestedClaims: ${k}`);
    assert.equal(claims.name, undefined, 'EnsureIdTokenDoesNotContainName');
  });

  test(name('oidcc-response-type-missing'), async () => {
    const r = await rp();
    const { response_type, ...sent } = r.request();
    const cb = await r.authorize(sent);
    assert.ok(['invalid_request', 'unsupported_response_type'].includes(r.checkErrorCallback(cb, sent)), 'CheckErrorFromAuthorizationEndpointErrorInvalidRequestOrUnsupportedResponseType');
  });

  for (const [module, opts] of [['oidcc-userinfo-get', {}], ['oidcc-userinfo-post-header', { method: 'POST' }], ['oidcc-userinfo-post-body', { method: 'POST', inBody: true }]]) {
    test(name(module), async () => {
      const r = await rp();
      const { tokens, claims } = await r.happyFlow();
      const info = await r.userinfo(tokens.access_token, opts);
      assert.equal(info.sub, claims.sub);
    });
  }

  test(name('oidcc-ensure-request-without-nonce-succeeds-for-code-flow'), async () => {
    const r = await rp();
    const sent = r.request({}, { nonce: false });
    assert.equal(sent.nonce, undefined);
    assert.equal(sent.code_challenge, undefined, 'nor PKCE');
    r.checkCallback(await r.authorize(sent), sent);
  });

  test(name('oidcc-scope-profile'), async () => {
    const r = await rp();
    assert.ok(r.meta.scopes_supported.includes('profile'), 'not skipped: profile is advertised');
    const { info } = await r.happyFlow({ scope: 'openid profile' });
    for (const c of ['name', 'preferred_username', 'updated_at']) assert.ok(info[c] !== undefined, `VerifyScopesReturnedInUserInfoClaims: ${c}`);
  });

  test(name('oidcc-scope-email'), async () => {
    const r = await rp();
    const { info, claims } = await r.happyFlow({ scope: 'openid email' });
    assert.equal(info.email, 'buffy@suite.example', 'VerifyScopesReturnedInUserInfoClaims: email');
    assert.equal(info.email_verified, true, 'VerifyScopesReturnedInUserInfoClaims: email_verified');
    assert.equal(claims.email, undefined, 'EnsureIdTokenDoesNotContainEmailForScopeEmail');
    assert.equal(info.name, undefined, 'EnsureUserInfoDoesNotContainName');
  });

  // We hold no postal addresses or phone numbers of pupils, so we do not advertise these scopes
  // and the suite skips these modules (OIDCCCheckScopesSupportedContainScopeTest); asked for
  // anyway, the scope is left out and releases nothing.
  for (const [module, scope, claim] of [['oidcc-scope-address', 'address', 'address'], ['oidcc-scope-phone', 'phone', 'phone_number']]) {
    test(name(module), async () => {
      const r = await rp();
      assert.equal(r.meta.scopes_supported.includes(scope), false, 'not advertised: the suite skips the module');
      const { info, tokens } = await r.happyFlow({ scope: `openid ${scope}` });
      assert.equal(info[claim], undefined);
      assert.equal(tokens.scope, 'openid', 'the scope was left out of the grant');
    });
  }

  test(name('oidcc-scope-all'), async () => {
    const r = await rp();
    const { info } = await r.happyFlow({ scope: 'openid email phone address profile' });
    for (const c of ['name', 'preferred_username', 'email', 'email_verified']) assert.ok(info[c] !== undefined, c);
  });

  test(name('oidcc-alternate-happy-flow'), async () => {
    const r = await rp();
    const { info } = await r.happyFlow({ scope: 'email openid' }, { reverse: true });
    assert.equal(info.email, 'buffy@suite.example');
  });

  for (const display of ['page', 'popup']) {
    test(name(`oidcc-display-${display}`), async () => {
      const r = await rp();
      const { cb } = await r.happyFlow({ display });
      assert.ok(cb.sawLogin, 'a fresh browser signs in');
    });
  }

  test(name('oidcc-prompt-login'), async () => {
    const r = await rp();
    const first = await r.happyFlow();
    await sleep(1100);
    const again = await r.happyFlow({ prompt: 'login' }, { jar: first.jar });
    assert.ok(again.cb.sawLogin, 'the server asked the user to log in a second time');
    assert.ok(again.claims.auth_time > first.claims.auth_time, 'CheckSecondIdTokenAuthTimeIsLaterIfPresent');
  });

  test(name('oidcc-prompt-none-not-logged-in'), async () => {
    const r = await rp();
    const sent = r.request({ prompt: 'none', state: randomValue(128, '-._~') });
    const error = r.checkErrorCallback(await r.authorize(sent), sent);
    assert.ok(['login_required', 'interaction_required', 'account_selection_required', 'consent_required'].includes(error), 'CheckErrorFromAuthorizationEndpointIsOneThatRequiredAUserInterface');
  });

  test(name('oidcc-prompt-none-logged-in'), async () => {
    const r = await rp();
    const first = await r.happyFlow();
    const again = await r.happyFlow({ prompt: 'none' }, { jar: first.jar });
    assert.equal(again.cb.sawLogin, false, 'silent');
    assert.equal(again.claims.auth_time, first.claims.auth_time, 'CheckIdTokenAuthTimeClaimsSameIfPresent');
    assert.equal(again.claims.sub, first.claims.sub, 'CheckIdTokenSubConsistentForSecondAuthorization');
  });

  test(name('oidcc-max-age-1'), async () => {
    const r = await rp();
    const first = await r.happyFlow();
    await sleep(2100);
    const again = await r.happyFlow({ max_age: '1' }, { jar: first.jar });
    assert.ok(again.cb.sawLogin, 'the server asked the user to log in again');
    assert.equal(typeof again.claims.auth_time, 'number', 'CheckIdTokenAuthTimeClaimPresentDueToMaxAge');
    assert.ok(again.claims.auth_time > first.claims.auth_time, 'CheckSecondIdTokenAuthTimeIsLaterIfPresent');
    assert.ok(again.claims.auth_time >= Math.floor(Date.now() / 1000) - 301, 'CheckIdTokenAuthTimeIsRecentIfPresent');
  });

  test(name('oidcc-max-age-10000'), async () => {
    const r = await rp();
    const first = await r.happyFlow({ max_age: '15000' });
    const again = await r.happyFlow({ max_age: '10000' }, { jar: first.jar });
    assert.equal(again.cb.sawLogin, false, 'silent');
    assert.equal(typeof first.claims.auth_time, 'number', 'CheckIdTokenAuthTimeClaimPresentDueToMaxAge');
    assert.equal(again.claims.auth_time, first.claims.auth_time, 'CheckIdTokenAuthTimeClaimsSameIfPresent');
    assert.equal(again.claims.sub, first.claims.sub);
  });

  test(name('oidcc-ensure-request-with-unknown-parameter-succeeds'), async () => {
    await (await rp()).happyFlow({ extra: 'foobar' });
  });

  test(name('oidcc-id-token-hint'), async () => {
    const r = await rp();
    const first = await r.happyFlow();
    const again = await r.happyFlow({ prompt: 'none', id_token_hint: first.tokens.id_token }, { jar: first.jar });
    assert.equal(again.cb.sawLogin, false, 'silent');
    assert.equal(again.claims.sub, first.claims.sub, 'CheckIdTokenSubConsistentForSecondAuthorization');
    assert.equal(again.claims.auth_time, first.claims.auth_time);
  });

  test(name('oidcc-login-hint'), async () => {
    const r = await rp();
    const sent = r.request({ login_hint: `buffy@${new URL(w.url).host}` });
    const login = await r.authorize(sent, { stopAtLogin: true });
    assert.match(login.page, /name="username" value="buffy@127\.0\.0\.1:\d+"/, 'the login form is filled in');
    await r.happyFlow({ login_hint: 'buffy' });
  });

  for (const [module, extra] of [['oidcc-ui-locales', { ui_locales: 'se' }], ['oidcc-claims-locales', { claims_locales: 'se' }]]) {
    test(name(module), async () => {
      await (await rp()).happyFlow(extra);
    });
  }

  test(name('oidcc-ensure-request-with-acr-values-succeeds'), async () => {
    const r = await rp();
    // OIDCCAddAcrValuesToAuthorizationEndpointRequest: the advertised values, joined.
    const requested = r.meta.acr_values_supported ?? ['1', '2'];
    const { claims } = await r.happyFlow({ acr_values: requested.join(' ') });
    assert.ok(requested.includes(claims.acr), `ValidateIdTokenACRClaimAgainstAcrValuesRequest: ${claims.acr}`);
  });

  test(name('oidcc-codereuse'), async () => {
    const r = await rp();
    const { code } = await r.happyFlow();
    const again = await r.tokenRequest({ grant_type: 'authorization_code', code, redirect_uri: r.redirectUri });
    assert.equal(again.status, 400, 'CheckTokenEndpointHttpStatus400');
    assert.match(again.headers.get('content-type'), /^application\/json/, 'CheckTokenEndpointReturnedJsonContentType');
    const body = await again.json();
    assert.equal(body.error, 'invalid_grant', 'CheckErrorFromTokenEndpointResponseErrorInvalidGrant');
    assert.match(body.error_description ?? '', /^[\x20\x21\x23-\x5B\x5D-\x7E]*$/, 'ValidateErrorDescriptionFromTokenEndpointResponseError');
  });

  test(name('oidcc-codereuse-30seconds'), async () => {
    const r = await rp();
    const { code, tokens } = await r.happyFlow();
    await sleep(30_000); // WaitFor30Seconds
    const again = await r.tokenRequest({ grant_type: 'authorization_code', code, redirect_uri: r.redirectUri });
    assert.equal(again.status, 400, 'CheckTokenEndpointHttpStatus400');
    assert.equal((await again.json()).error, 'invalid_grant');
    const info = await w.fetch('/oauth2/userinfo', { headers: { authorization: `Bearer ${tokens.access_token}` } });
    assert.ok(info.status >= 400 && info.status < 500, 'EnsureHttpStatusCodeIs4xx: the tokens of a reused code are revoked');
  });

  test(name('oidcc-ensure-registered-redirect-uri'), async () => {
    const r = await rp();
    const sent = r.request({ redirect_uri: `${BASE}/callback/${randomValue(10)}` });
    const shown = await r.authorize(sent);
    assert.ok(shown.page && shown.status >= 400, 'an error page, never a redirect to either URI');
    assert.match(shown.page, /redirect_uri is not registered/);
  });

  test(name('oidcc-ensure-post-request-succeeds'), async () => {
    await (await rp()).happyFlow({}, { post: true });
  });

  test(name('oidcc-server-client-secret-post'), async () => {
    const r = await rp();
    assert.ok(r.meta.token_endpoint_auth_methods_supported.includes('client_secret_post'), 'EnsureServerConfigurationSupportsClientSecretPost');
    await r.happyFlow({}, { auth: 'client_secret_post' });
  });

  test(name('oidcc-unsigned-request-object-supported-correctly-or-rejected-as-unsupported'), async () => {
    const r = await rp();
    assert.equal(r.meta.request_parameter_supported, true, 'CheckDiscEndpointRequestParameterSupported');
    assert.ok(r.meta.request_object_signing_alg_values_supported.includes('none'), 'not skipped: none is offered');
    const inner = r.request();
    const enc = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
    // State and nonce only in the object; the query carries what OAuth needs.
    const { state, nonce, ...outer } = inner;
    const sent = { ...outer, request: `${enc({ alg: 'none' })}.${enc(inner)}.` };
    const code = r.checkCallback(await r.authorize(sent), inner);
    const { claims } = await r.exchange(code, inner);
    assert.equal(claims.nonce, inner.nonce, 'the nonce from the request object');
  });

  test(name('oidcc-claims-essential'), async () => {
    const r = await rp();
    const { info, claims } = await r.happyFlow({ claims: JSON.stringify({ userinfo: { name: { essential: true } } }) });
    assert.equal(info.name, 'Buffy Summers', 'EnsureUserInfoContainsName');
    assert.equal(claims.name, undefined, 'EnsureIdTokenDoesNotContainName');
  });

  test(name('oidcc-ensure-request-object-with-redirect-uri'), async () => {
    const r = await rp();
    const enc = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
    const good = r.request();
    const sent = { ...good, redirect_uri: `${BASE}/callback_invalid`, request: `${enc({ alg: 'none' })}.${enc(good)}.` };
    // OpenID Connect Core §6.1: the object's redirect_uri (registered) is the one used, and the
    // flow completes; never a redirect to a URI that is not registered.
    const cb = await r.authorize(sent);
    r.checkCallback(cb, good);
  });

  test(name('oidcc-refresh-token'), async () => {
    const r = await rp();
    const methods = r.meta.grant_types_supported;
    assert.ok(methods.includes('refresh_token'), 'EnsureServerConfigurationSupportsRefreshToken');
    const first = await r.happyFlow();
    const rt = first.tokens.refresh_token;
    assert.ok(rt, 'a refresh token is issued (the module is not skipped)');
    assert.match(rt, /^[\x20-\x7E]+$/, 'EnsureRefreshTokenContainsAllowedCharactersOnly');
    await sleep(1000);
    const res = await r.tokenRequest({ grant_type: 'refresh_token', refresh_token: rt, scope: 'openid' });
    assert.equal(res.status, 200, 'CheckTokenEndpointHttpStatus200');
    assert.match(res.headers.get('content-type'), /^application\/json/, 'CheckTokenEndpointReturnedJsonContentType');
    assert.ok(res.headers.get('cache-control').split(',').map((s) => s.trim()).includes('no-store'), 'CheckTokenEndpointCacheHeaders');
    const refreshed = await res.json();
    assert.equal(refreshed.token_type.toLowerCase(), 'bearer', 'CheckTokenTypeIsBearer');
    assert.match(refreshed.access_token, /^[\x20-\x7E]+$/, 'EnsureAccessTokenContainsAllowedCharactersOnly');
    if (refreshed.refresh_token) assert.ok(refreshed.refresh_token.length >= 22, 'EnsureMinimumRefreshTokenLength');
    if (refreshed.id_token) {
      const again = r.checkIdToken(refreshed.id_token, { accessToken: refreshed.access_token });
      for (const c of ['iss', 'sub', 'aud', 'azp', 'auth_time']) assert.deepEqual(again[c], first.claims[c], `CompareIdTokenClaims: ${c}`);
    }
    // Client 2's refresh token with client 1's credentials.
    const r2 = await new SuiteRp(w, { client: client2, responseMode: mode, username: 'buffy', password: PASSWORD }).configure();
    const second = await r2.happyFlow({}, { client: client2 });
    const stolen = await r.tokenRequest({ grant_type: 'refresh_token', refresh_token: second.tokens.refresh_token, scope: 'openid' });
    assert.equal(stolen.status, 400, 'CheckTokenEndpointHttpStatus400');
    assert.equal((await stolen.json()).error, 'invalid_grant', 'CheckErrorFromTokenEndpointResponseErrorInvalidGrant');
  });

  test(name('oidcc-ensure-request-with-valid-pkce-succeeds'), async () => {
    const r = await rp();
    const { verifier, challenge } = pkce();
    await r.happyFlow({ code_challenge: challenge, code_challenge_method: 'S256' }, { extra: { code_verifier: verifier } });
  });
}

test('config_oidcc-discovery-endpoint-verification', async () => {
  const res = await w.fetch('/.well-known/openid-configuration');
  assert.equal(res.status, 200, 'EnsureDiscoveryEndpointResponseStatusCodeIs200');
  assert.match(res.headers.get('content-type'), /^application\/json/, 'CheckDiscoveryEndpointReturnedJsonContentType');
  const d = await res.json();
  assert.ok(d.response_types_supported.includes('code'), 'OIDCCCheckDiscEndpointResponseTypesSupported');
  assert.equal(d.issuer, w.url, 'CheckDiscEndpointIssuer');
  assert.ok(['public', 'pairwise'].some((t) => d.subject_types_supported.includes(t)), 'CheckDiscEndpointSubjectTypesSupported');
  assert.ok(d.id_token_signing_alg_values_supported.includes('RS256'), 'OIDCCCheckDiscEndpointIdTokenSigningAlgValuesSupported');
  for (const k of Object.keys(d).filter((k) => k.endsWith('_endpoint')).concat(['jwks_uri'])) {
    // CheckDiscEndpointAllEndpointsAreHttps: every endpoint is under the issuer, https in a deployment
    // (an http issuer is refused unless it is loopback, protocol::discovery::Issuer).
    assert.ok(d[k].startsWith(`${d.issuer}/`), `${k} is under the issuer`);
  }
  assert.ok(Array.isArray(d.claims_supported), 'OIDCCCheckDiscEndpointClaimsSupported');
  assert.equal(d.claims_parameter_supported, true, 'CheckDiscEndpointClaimsParameterSupported');
  assert.ok(d.grant_types_supported.length > 0, 'OIDCCCheckDiscEndpointGrantTypesSupported');
  assert.ok(d.scopes_supported.includes('openid'), 'CheckDiscEndpointScopesSupportedContainsOpenId');
  for (const s of d.scopes_supported) assert.match(s, /^[\x21\x23-\x5B\x5D-\x7E]+$/, 'CheckDiscEndpointScopesSupportedSyntax');
  assert.ok(Array.isArray(d.code_challenge_methods_supported) && d.code_challenge_methods_supported.includes('S256'), 'EnsureServerConfigurationCodeChallengeMethodsSupportedIsAnArray');
  for (const [k, v] of Object.entries(d)) {
    if (k.endsWith('_supported') && !['claims_parameter_supported', 'request_parameter_supported', 'request_uri_parameter_supported', 'authorization_response_iss_parameter_supported'].includes(k)) {
      assert.ok(Array.isArray(v) && v.every((x) => typeof x === 'string'), `ValidateServerMetadataAgainstSchema: ${k}`);
    }
  }
  const jwks = await (await w.fetch(new URL(d.jwks_uri).pathname)).json();
  const { checkJwks } = await import('./conformance.mjs');
  checkJwks(jwks);
});
