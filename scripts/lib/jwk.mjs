// JWK helpers shared by scripts/keys, scripts/dev.sh and the end-to-end tests.
import { createHash, createPrivateKey, generateKeyPairSync, randomUUID, sign as cryptoSign } from 'node:crypto';

const REQUIRED = { OKP: ['crv', 'kty', 'x'], EC: ['crv', 'kty', 'x', 'y'], RSA: ['e', 'kty', 'n'] };

/** RFC 7638 thumbprint (SHA-256, base64url). */
export function thumbprint(jwk) {
  const members = REQUIRED[jwk.kty];
  if (!members) throw new Error(`unsupported kty ${jwk.kty}`);
  const canonical = JSON.stringify(Object.fromEntries(members.map((m) => [m, jwk[m]])));
  return createHash('sha256').update(canonical).digest('base64url');
}

/** A fresh private JWK for `alg` (EdDSA, ES256 or RS256), with its thumbprint as kid. */
export function generateJwk(alg = 'EdDSA') {
  let pair;
  if (alg === 'EdDSA') pair = generateKeyPairSync('ed25519');
  else if (alg === 'ES256') pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  else if (alg === 'RS256') pair = generateKeyPairSync('rsa', { modulusLength: 2048 });
  else throw new Error(`unsupported alg ${alg} (EdDSA, ES256, RS256)`);
  const jwk = pair.privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: thumbprint(jwk), alg, use: 'sig' };
}

const PRIVATE = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

export function publicJwk(jwk) {
  return Object.fromEntries(Object.entries(jwk).filter(([k]) => !PRIVATE.includes(k)));
}

/** The signing key set a new deployment starts with: Ed25519 first (access tokens), RS256 for ID tokens. */
export function initialKeySet() {
  return { keys: [generateJwk('EdDSA'), generateJwk('RS256')] };
}

/** The `typ` of a partner's link request and of its automatic-login assertion (a jwt-bearer
 * grant assertion is plain `JWT`): each kind names its purpose, so none passes for another. */
export const LINK_REQUEST_TYP = 'edgeward-link+jwt';
export const LOGIN_ASSERTION_TYP = 'edgeward-login+jwt';
/** The `typ` of the partner's server-to-server confirmation of a link (`POST /link/confirm`). */
export const LINK_CONFIRMATION_TYP = 'edgeward-link-confirm+jwt';

/** The claims of a link request (a compact JWS), unverified: the partner's own request. */
export function linkRequestClaims(request) {
  return JSON.parse(Buffer.from(request.split('.')[1], 'base64url').toString());
}

/** The confirmation a partner signs for `POST /link/confirm` after the browser came back with a
 * link code for its link `request` (and `state` matched its own session): the same partner
 * account (`sub`), naming the request by its `jti`, fresh `jti`, two minutes at most. */
export function linkConfirmation(jwk, request, overrides = {}) {
  const r = linkRequestClaims(request);
  const now = Math.floor(Date.now() / 1000);
  return signJwt(
    jwk,
    { alg: jwk.alg ?? 'EdDSA', kid: jwk.kid, typ: LINK_CONFIRMATION_TYP },
    { iss: r.iss, aud: r.aud, sub: r.sub, jti: randomUUID(), iat: now, exp: now + 60, link_request: r.jti, ...overrides },
  );
}

/** A compact JWS of `payload` with `header`, signed with the private `jwk` by `header.alg`
 * (EdDSA, ES256, or RS256 for anything else). */
export function signJwt(jwk, header, payload) {
  const enc = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const input = Buffer.from(`${enc(header)}.${enc(payload)}`);
  const key = createPrivateKey({ key: jwk, format: 'jwk' });
  const sig =
    header.alg === 'EdDSA' || header.alg === 'Ed25519'
      ? cryptoSign(null, input, key)
      : header.alg === 'ES256'
        ? cryptoSign('sha256', input, { key, dsaEncoding: 'ieee-p1363' })
        : cryptoSign('sha256', input, key);
  return `${input}.${sig.toString('base64url')}`;
}
