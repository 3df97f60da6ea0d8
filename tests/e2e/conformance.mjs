// A relying party that does what the OpenID Foundation's conformance suite does in its OP test
// plans (openid-certification/conformance-suite, `AbstractOIDCCServerTest` and the conditions it
// calls), so that each module can be mirrored by a test named after it. Each check names the
// suite's condition; a FAILURE there is an assertion here. The suite itself (Java, MongoDB) does
// not run on this machine.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { CookieJar, basicAuth, decodeJwt, formFields, verifyJwt } from './oauth.mjs';
import { signJwt } from '../../scripts/lib/jwk.mjs';

const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** `CreateRandomStateValue` / `CreateRandomNonceValue`: alphanumerics, with `-._~` when longer. */
export function randomValue(length = 10, extra = '') {
  const chars = ALNUM + extra;
  return [...randomBytes(length)].map((b) => chars[b % chars.length]).join('');
}

/** The suite's RP against worker `w`, for `client` (static registration), in `responseMode`. */
export class SuiteRp {
  constructor(w, { client, responseMode = 'query', username, password }) {
    Object.assign(this, { w, client, responseMode, username, password });
    this.redirectUri = client.redirect_uris[0];
  }

  /** Configure phase: discovery, the JWKS, the client-auth support (section 1.1). */
  async configure() {
    const res = await this.w.fetch('/.well-known/openid-configuration');
    assert.equal(res.status, 200, 'EnsureDiscoveryEndpointResponseStatusCodeIs200');
    this.meta = await res.json();
    for (const f of ['issuer', 'authorization_endpoint', 'token_endpoint']) assert.ok(this.meta[f], `CheckServerConfiguration: ${f}`);
    assert.ok(this.meta.userinfo_endpoint, 'SetProtectedResourceUrlToUserInfoEndpoint');
    const jwksRes = await this.w.fetch(new URL(this.meta.jwks_uri).pathname);
    assert.equal(jwksRes.status, 200, 'FetchServerKeys');
    this.jwks = await jwksRes.json();
    checkJwks(this.jwks);
    const methods = this.meta.token_endpoint_auth_methods_supported;
    assert.ok(!methods || methods.includes('client_secret_basic'), 'EnsureServerConfigurationSupportsClientSecretBasic');
    return this;
  }

  /** `CreateAuthorizationRequestSteps`: scope openid, 10-character state and nonce, no PKCE. */
  request(extra = {}, { nonce = true } = {}) {
    const params = { client_id: this.client.client_id, redirect_uri: this.redirectUri, scope: 'openid', state: randomValue(), response_type: 'code' };
    if (nonce) params.nonce = randomValue();
    if (this.responseMode === 'form_post') params.response_mode = 'form_post';
    return { ...params, ...extra };
  }

  /**
   * The browser: the authorization request (GET with parameters in alphabetical order, or POST),
   * through our login and consent pages. Answers the authorization response as the suite's
   * callback sees it: `{ params, method, query }`, or `{ page }` when we showed the person a page
   * instead (an error page, or the login form when `stopAtLogin`).
   */
  async authorize(params, { jar = new CookieJar(this.w.url), post = false, reverse = false, stopAtLogin = false } = {}) {
    const keys = Object.keys(params).sort();
    if (reverse) keys.reverse();
    const ordered = new URLSearchParams(keys.map((k) => [k, params[k]]));
    let res = post ? await jar.postForm('/oauth2/authorize', Object.fromEntries(ordered)) : await jar.fetch(`/oauth2/authorize?${ordered}`);
    let sawLogin = false;
    for (let hops = 0; hops < 10; hops++) {
      if ([302, 303].includes(res.status)) {
        const loc = new URL(res.headers.get('location'), this.w.url);
        if (loc.origin !== new URL(this.w.url).origin) {
          assert.equal(this.responseMode, 'query', 'RejectAuthCodeInUrlQuery / RejectErrorInUrlQuery: form_post answers by POST');
          return { params: Object.fromEntries(loc.searchParams), method: 'GET', location: loc, sawLogin, jar };
        }
        res = await jar.fetch(loc.pathname + loc.search);
        continue;
      }
      const html = await res.text();
      if (res.status === 200 && html.includes('name="password"')) {
        sawLogin = true;
        if (stopAtLogin) return { page: html, status: res.status, sawLogin, jar };
        res = await jar.postForm('/login', { ...formFields(html), username: this.username, password: this.password });
      } else if (res.status === 200 && html.includes('name="decision"')) {
        res = await jar.postForm('/oauth2/authorize', { ...formFields(html), decision: 'allow' });
      } else if (res.status === 200 && /<form method="post" action="([^"]+)">/.test(html) && html.includes('<script>')) {
        // The form-post response: the browser posts the form (urlencoded, the HTML default) to the action.
        const action = html.match(/<form method="post" action="([^"]+)">/)[1].replace(/&amp;/g, '&');
        assert.equal(this.responseMode, 'form_post', 'a form-post page only when asked for');
        assert.doesNotMatch(html, /enctype=/, 'CheckCallbackContentTypeIsFormUrlEncoded: the form posts urlencoded');
        const location = new URL(action);
        assert.equal(location.search, new URL(this.redirectUri).search, 'RejectAuthCodeInUrlQuery: nothing added to the query');
        return { params: formFields(html), method: 'POST', location, sawLogin, jar };
      } else {
        return { page: html, status: res.status, sawLogin, jar };
      }
    }
    throw new Error('too many hops');
  }

  /** The callback checks of a successful response (section 1.3). Answers the code. */
  checkCallback(cb, sent) {
    assert.ok(cb.params, `an authorization response, not a page: ${cb.page?.slice(0, 200)}`);
    if (this.responseMode === 'form_post') assert.equal(cb.method, 'POST', 'CheckCallbackHttpMethodIsPost');
    assert.equal(cb.location.origin + cb.location.pathname, new URL(this.redirectUri).origin + new URL(this.redirectUri).pathname);
    if (cb.params.iss !== undefined) assert.equal(cb.params.iss, this.meta.issuer, 'ValidateIssIfPresentInAuthorizationResponse');
    assert.equal(cb.params.error, undefined, `CheckIfAuthorizationEndpointError: ${cb.params.error} ${cb.params.error_description}`);
    assert.equal(cb.params.state, sent.state, 'CheckStateInAuthorizationResponse');
    assert.ok(cb.params.code, 'ExtractAuthorizationCodeFromAuthorizationResponse');
    return cb.params.code;
  }

  /** `performGenericAuthorizationEndpointErrorResponseValidation` (section 1.6). */
  checkErrorCallback(cb, sent) {
    assert.ok(cb.params, `an error response to the client, not a page: ${cb.page?.slice(0, 200)}`);
    if (this.responseMode === 'form_post') assert.equal(cb.method, 'POST', 'CheckCallbackHttpMethodIsPost');
    assert.equal(cb.params.state, sent.state, 'CheckStateInAuthorizationResponse');
    if (cb.params.iss !== undefined) assert.equal(cb.params.iss, this.meta.issuer, 'ValidateIssIfPresentInAuthorizationResponse');
    assert.ok(cb.params.error, 'EnsureErrorFromAuthorizationEndpointResponse');
    assert.equal(cb.params.code, undefined, 'RejectAuthCodeInAuthorizationEndpointResponse');
    for (const k of Object.keys(cb.params)) {
      assert.ok(['error', 'error_description', 'error_uri', 'state', 'session_state', 'iss'].includes(k), `CheckForUnexpectedParametersInErrorResponseFromAuthorizationEndpoint: ${k}`);
    }
    const d = cb.params.error_description ?? '';
    assert.doesNotMatch(d, /[\r\n\t]/, 'CheckErrorDescriptionFromAuthorizationEndpointResponseErrorContainsCRLFTAB');
    assert.match(d, /^[\x20\x21\x23-\x5B\x5D-\x7E]*$/, 'ValidateErrorDescriptionFromAuthorizationEndpointResponseError');
    return cb.params.error;
  }

  /**
   * The token request for a code (section 1.4), authenticated as `auth` says (the client's own
   * `auth` first: a dynamically registered private_key_jwt client carries its `privateJwk`).
   * `assertionAud` is the audience of a private_key_jwt assertion (the token endpoint by default).
   */
  async tokenRequest(fields, { auth, client = this.client, assertionAud } = {}) {
    auth ??= client.auth ?? 'client_secret_basic';
    const body = new URLSearchParams(fields);
    const headers = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
    if (auth === 'client_secret_basic') headers.authorization = basicAuth(client.client_id, client.client_secret);
    else if (auth === 'private_key_jwt') {
      // CreateJWTClientAuthenticationAssertionAndAddToTokenEndpointRequest.
      const now = Math.floor(Date.now() / 1000);
      const header = { alg: 'RS256', typ: 'JWT', ...(client.privateJwk.kid ? { kid: client.privateJwk.kid } : {}) };
      const claims = { iss: client.client_id, sub: client.client_id, aud: assertionAud ?? this.meta.token_endpoint, jti: randomValue(20), iat: now, nbf: now, exp: now + 60 };
      body.set('client_assertion_type', 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
      body.set('client_assertion', signJwt(client.privateJwk, header, claims));
    } else {
      body.set('client_id', client.client_id);
      body.set('client_secret', client.client_secret);
    }
    return this.w.fetch(new URL(this.meta.token_endpoint).pathname, { method: 'POST', headers, body: body.toString() });
  }

  /** Code exchange and the token-response checks, then `PerformStandardIdTokenChecks`. */
  async exchange(code, sent, opts = {}) {
    const res = await this.tokenRequest({ grant_type: 'authorization_code', code, redirect_uri: this.redirectUri, ...(opts.extra ?? {}) }, opts);
    assert.equal(res.status, 200, 'CheckTokenEndpointHttpStatus200');
    const tokens = await res.json();
    assert.equal(tokens.error, undefined, 'CheckIfTokenEndpointResponseError');
    assert.ok(tokens.access_token && tokens.token_type, 'CheckForAccessTokenValue');
    if (tokens.expires_in !== undefined) assert.ok(tokens.expires_in > 0 && tokens.expires_in <= 31536000, 'ValidateExpiresIn');
    assert.ok(tokens.id_token, 'ExtractIdTokenFromTokenResponse');
    const claims = this.checkIdToken(tokens.id_token, { nonce: sent.nonce, maxAge: sent.max_age, accessToken: tokens.access_token, client: opts.client });
    return { tokens, claims, response: res };
  }

  /** `PerformStandardIdTokenChecks` (section 8.1). */
  checkIdToken(idToken, { nonce, maxAge, accessToken, client = this.client }) {
    const { header } = decodeJwt(idToken);
    const claims = verifyJwt(idToken, this.jwks); // ValidateIdTokenSignature
    const now = Math.floor(Date.now() / 1000);
    assert.equal(claims.iss, this.meta.issuer, 'ValidateIdToken: iss');
    assert.ok(claims.aud === client.client_id || (Array.isArray(claims.aud) && claims.aud.includes(client.client_id)), 'ValidateIdToken: aud');
    assert.ok(claims.exp > now - 300, 'ValidateIdToken: exp');
    assert.ok(claims.iat <= now + 300 && claims.iat >= now - 300 - 5, 'ValidateIdToken: iat');
    if (claims.auth_time !== undefined) assert.ok(claims.auth_time <= now + 300 && claims.auth_time > now - 365 * 86400, 'ValidateIdToken: auth_time');
    if (claims.acr !== undefined) assert.ok(typeof claims.acr === 'string' && claims.acr !== '', 'ValidateIdToken: acr');
    if (nonce !== undefined) assert.equal(claims.nonce, nonce, 'ValidateIdTokenNonce');
    assert.ok(typeof claims.sub === 'string' && claims.sub.length <= 255 && /^[\x20-\x7E]+$/.test(claims.sub), 'CheckForSubjectInIdToken');
    if (claims.updated_at !== undefined) assert.equal(typeof claims.updated_at, 'number', 'ValidateIdTokenStandardClaims: updated_at');
    if (claims.email_verified !== undefined) assert.equal(typeof claims.email_verified, 'boolean', 'ValidateIdTokenStandardClaims: email_verified');
    if (maxAge !== undefined) assert.equal(typeof claims.auth_time, 'number', 'CheckIdTokenAuthTimeClaimPresentDueToMaxAge');
    if (claims.at_hash !== undefined && accessToken) assert.equal(claims.at_hash, atHash(accessToken, header.alg), 'ValidateAtHash');
    return claims;
  }

  /** `CallProtectedResource` at the UserInfo endpoint and the userinfo checks (section 8.2). */
  async userinfo(accessToken, { method = 'GET', inBody = false } = {}) {
    const path = new URL(this.meta.userinfo_endpoint).pathname;
    const init = { method, headers: { accept: 'application/json' } };
    if (inBody) {
      init.headers['content-type'] = 'application/x-www-form-urlencoded';
      init.body = new URLSearchParams({ access_token: accessToken }).toString();
    } else {
      init.headers.authorization = `Bearer ${accessToken}`;
      if (method === 'POST') {
        init.headers['content-type'] = 'application/x-www-form-urlencoded';
        init.body = '';
      }
    }
    const res = await this.w.fetch(path, init);
    assert.equal(res.status, 200, 'EnsureHttpStatusCodeIs200');
    assert.match(res.headers.get('content-type'), /^application\/json/, 'EnsureContentTypeJson');
    const info = await res.json();
    assert.ok(Object.keys(info).length > 0, 'ValidateUserInfoStandardClaims: not empty');
    assert.ok(info.sub, 'EnsureUserInfoContainsSub');
    if (info.updated_at !== undefined) assert.ok(Number.isInteger(info.updated_at) && info.updated_at > 631152000, 'EnsureUserInfoUpdatedAtValid');
    if (info.email_verified !== undefined) assert.equal(typeof info.email_verified, 'boolean', 'ValidateUserInfoStandardClaims');
    return info;
  }

  /** The normal flow of a module: authorize, callback, exchange, userinfo. */
  async happyFlow(extra = {}, opts = {}) {
    const sent = this.request(extra, opts);
    const cb = await this.authorize(sent, opts);
    const code = this.checkCallback(cb, sent);
    const { tokens, claims } = await this.exchange(code, sent, opts);
    const info = await this.userinfo(tokens.access_token);
    assert.equal(info.sub, claims.sub, 'VerifyUserInfoAndIdTokenInTokenEndpointSameSub');
    return { sent, cb, code, tokens, claims, info, jar: cb.jar };
  }
}

/** `ValidateJwksSequence`, `CheckForKeyIdInServerJWKs`, `CheckDistinctKeyIdValueInServerJWKs`. */
export function checkJwks(jwks) {
  assert.ok(Array.isArray(jwks.keys) && jwks.keys.length > 0, 'ValidateJwksStructure');
  const kids = jwks.keys.map((k) => k.kid);
  for (const k of jwks.keys) {
    assert.ok(typeof k.kid === 'string' && k.kid.trim() !== '', 'CheckForKeyIdInServerJWKs');
    for (const priv of ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k']) assert.equal(k[priv], undefined, 'EnsureJwksHasNoPrivateOrSymmetricKeyMaterial');
  }
  assert.equal(new Set(kids).size, kids.length, 'CheckDistinctKeyIdValueInServerJWKs');
}

/** `ValidateAtHash`: the left half of the alg's SHA-2 of the access token, base64url. */
export function atHash(token, alg) {
  const hash = alg === 'EdDSA' ? 'sha512' : alg.endsWith('384') ? 'sha384' : alg.endsWith('512') ? 'sha512' : 'sha256';
  const d = createHash(hash).update(token).digest();
  return d.subarray(0, d.length / 2).toString('base64url');
}
