// JWK helpers shared by scripts/keys, scripts/dev.sh and the end-to-end tests.
import { createHash, generateKeyPairSync } from 'node:crypto';

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
