// Helpers for driving the OAuth flows over plain HTTP: a cookie-keeping browser stand-in, PKCE,
// and JWT verification against the published JWKS (node's own crypto, not ours).
import { createHash, createHmac, createPublicKey, randomBytes, verify as cryptoVerify } from 'node:crypto';
import { generateJwk, linkConfirmation, signJwt } from '../../scripts/lib/jwk.mjs';

export class CookieJar {
  constructor(base) {
    this.base = base;
    this.cookies = new Map();
  }

  async fetch(pathOrUrl, init = {}) {
    const url = pathOrUrl.startsWith('http') ? pathOrUrl : this.base + pathOrUrl;
    const headers = { ...(init.headers || {}) };
    if (this.cookies.size) headers.cookie = [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
    const res = await fetch(url, { ...init, headers, redirect: 'manual' });
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const i = pair.indexOf('=');
      const name = pair.slice(0, i);
      const value = pair.slice(i + 1);
      if (value === '' || /max-age=0/i.test(c)) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
    return res;
  }

  postForm(path, fields, headers = {}) {
    return this.fetch(path, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
      body: new URLSearchParams(fields).toString(),
    });
  }
}

export function pkce() {
  const verifier = randomBytes(32).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  return { verifier, challenge };
}

/** Hidden and named inputs of the first form on a page. */
export function formFields(html) {
  const fields = {};
  for (const m of html.matchAll(/<input[^>]*type="hidden"[^>]*name="([^"]+)"[^>]*value="([^"]*)"/g)) {
    fields[m[1]] = m[2]
      .replace(/&quot;/g, '"')
      .replace(/&#39;/g, "'")
      .replace(/&lt;/g, '<')
      .replace(/&gt;/g, '>')
      .replace(/&amp;/g, '&');
  }
  return fields;
}

export function decodeJwt(token) {
  const [h, p] = token.split('.');
  return {
    header: JSON.parse(Buffer.from(h, 'base64url').toString()),
    payload: JSON.parse(Buffer.from(p, 'base64url').toString()),
  };
}

/** Verifies a JWT's signature against a JWK Set with node's crypto. Returns the payload. */
export function verifyJwt(token, jwks) {
  const [h, p, s] = token.split('.');
  const { header, payload } = decodeJwt(token);
  const jwk = jwks.keys.find((k) => k.kid === header.kid);
  if (!jwk) throw new Error(`no key ${header.kid}`);
  if (jwk.alg !== header.alg) throw new Error(`alg ${header.alg} does not match key ${jwk.alg}`);
  const key = createPublicKey({ key: jwk, format: 'jwk' });
  const data = Buffer.from(`${h}.${p}`);
  const sig = Buffer.from(s, 'base64url');
  const ok =
    header.alg === 'EdDSA' || header.alg === 'Ed25519'
      ? cryptoVerify(null, data, key, sig)
      : header.alg === 'RS256'
        ? cryptoVerify('sha256', data, key, sig)
        : header.alg === 'ES256'
          ? cryptoVerify('sha256', data, { key, dsaEncoding: 'ieee-p1363' }, sig)
          : false;
  if (!ok) throw new Error('bad signature');
  return payload;
}

/** A client-credentials token request of `client` on worker `w` (optionally for `scope`). */
export function clientCredentials(w, client, scope) {
  const fields = { grant_type: 'client_credentials', ...(scope === undefined ? {} : { scope }) };
  return w.fetch('/oauth2/token', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(client.client_id, client.client_secret) },
    body: new URLSearchParams(fields).toString(),
  });
}

/** The access token of a client-credentials request that must succeed. */
export async function serviceToken(w, client, scope) {
  const res = await clientCredentials(w, client, scope);
  if (res.status !== 200) throw new Error(`client_credentials: ${res.status} ${await res.text()}`);
  return (await res.json()).access_token;
}

export function basicAuth(id, secret) {
  const enc = (s) => encodeURIComponent(s);
  return `Basic ${Buffer.from(`${enc(id)}:${enc(secret)}`).toString('base64')}`;
}

/**
 * Runs the browser part of the code flow for `username`: authorize, login, consent.
 * Returns the callback URL the browser was sent to.
 */
export async function browserFlow(w, { client, username, password, scope = 'openid profile', state = 'st-1', nonce, challenge, jar, extra = {} }) {
  jar ??= new CookieJar(w.url);
  const params = {
    response_type: 'code',
    client_id: client.client_id,
    redirect_uri: client.redirect_uris[0],
    scope,
    state,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    ...(nonce ? { nonce } : {}),
    ...extra,
  };
  let res = await jar.fetch(`/oauth2/authorize?${new URLSearchParams(params)}`);
  for (let hops = 0; hops < 6; hops++) {
    if (res.status === 302 || res.status === 303) {
      const loc = res.headers.get('location');
      if (!loc.startsWith(w.url) && !loc.startsWith('/')) return { callback: new URL(loc), jar };
      res = await jar.fetch(loc);
      continue;
    }
    const html = await res.text();
    if (res.status !== 200) throw new Error(`unexpected ${res.status}: ${html.slice(0, 300)}`);
    const fields = formFields(html);
    if (html.includes('name="password"')) {
      res = await jar.postForm('/login', { ...fields, username, password });
    } else if (html.includes('name="decision"')) {
      res = await jar.postForm('/oauth2/authorize', { ...fields, decision: 'allow' });
    } else {
      throw new Error(`unexpected page: ${html.slice(0, 300)}`);
    }
  }
  throw new Error('too many hops');
}

/** A JWT signed with `jwk` (for instance one of the Worker's own keys, which the harness knows). */
export const signWith = signJwt;

/**
 * Every way to fake an access token, derived from a real one of worker `w`: none of them may
 * pass any check of ours. Keyed by what the forgery tries.
 */
export function forgeAccessTokens(w, accessToken) {
  const real = decodeJwt(accessToken);
  const key = w.signingKeys.keys[0];
  const now = Math.floor(Date.now() / 1000);
  const h = { ...real.header };
  const p = { ...real.payload, exp: now + 300, iat: now };
  const enc = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const [rh, rp, rs] = accessToken.split('.');
  const publicJwk = JSON.stringify(w.signingKeys.keys.map(({ d, ...pub }) => pub)[0]);
  const hsInput = `${enc({ ...h, alg: 'HS256' })}.${rp}`;
  const stranger = generateJwk('EdDSA');
  return {
    'alg none': `${enc({ ...h, alg: 'none' })}.${rp}.`,
    'HS256 signed with the public key': `${hsInput}.${createHmac('sha256', publicJwk).update(hsInput).digest('base64url')}`,
    'unknown kid': signWith(stranger, { ...h, kid: stranger.kid }, p),
    'our kid, another key': signWith(stranger, h, p),
    expired: signWith(key, h, { ...p, exp: now - 10, iat: now - 310 }),
    'not yet valid': signWith(key, h, { ...p, nbf: now + 600 }),
    'wrong aud': signWith(key, h, { ...p, aud: 'https://other.example/api' }),
    'wrong iss': signWith(key, h, { ...p, iss: 'https://evil.example' }),
    'wrong typ': signWith(key, { ...h, typ: 'JWT' }, p),
    'signed with our RSA key (for ID tokens only)': signWith(w.signingKeys.keys[1], { ...h, alg: 'RS256', kid: w.signingKeys.keys[1].kid }, p),
    'tampered payload': `${rh}.${enc({ ...real.payload, scope: `${real.payload.scope} admin` })}.${rs}`,
    garbage: 'not.a.token',
  };
}

/** The whole link flow in a signed-in browser (`jar`): the consent page for `request`, Allow,
 * and the partner's confirmation with `jwk` when the browser was sent back. Asserts nothing:
 * the three responses are the caller's to check (`confirmed` is null if there was no redirect). */
export async function linkAndConfirm(jar, jwk, request) {
  const page = await jar.fetch(`/link?request=${encodeURIComponent(request)}`);
  const agreed = await jar.postForm('/link', { ...formFields(await page.clone().text()), decision: 'allow' });
  const location = agreed.headers.get('location');
  const confirmed = agreed.status === 303 && location ? await confirmLink(jar.base, jwk, request, location) : null;
  return { page, agreed, confirmed };
}

/** What a partner's server does when the browser comes back from `/link` to `location` with a
 * link code for its `request`: redeems it with a confirmation signed with `jwk`. Answers the
 * response of `POST /link/confirm`. */
export async function confirmLink(baseUrl, jwk, request, location, overrides = {}) {
  const back = new URL(location);
  const body = new URLSearchParams({
    link_code: back.searchParams.get('link_code') ?? '',
    assertion: linkConfirmation(jwk, request, overrides),
  });
  return fetch(`${baseUrl}/link/confirm`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body,
  });
}
