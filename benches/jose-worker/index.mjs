// The comparison Worker of scripts/bench.sh: edgeward's `/edge/whoami` checks written by hand in
// JavaScript with the `jose` library, the way a competent user would write them instead of
// deploying edgeward. Per request, as edgeward does:
//   1. partner gate: a browser call (Origin header) must come from an active partner's origin
//      (KV `origin:{origin}`, through a small in-isolate cache, TTL 30 s like edgeward's);
//   2. the bearer access token: EdDSA signature against a local JWKS (var JWKS: the public key
//      set edgeward publishes), `typ` at+jwt, `iss`, `aud`, `exp` (jose's jwtVerify);
//      not revoked (KV `revoked:{gid or jti}`), its client known and its partner active
//      (KV `client:{id}`, `partner:{id}`), all through the same cache; the page's partner must
//      be the token's partner;
//   3. the scope (var WHOAMI_SCOPE, if set; edgeward's whoami needs any valid token);
//   4. a fixed-window in-memory rate limit per partner and per client (per minute);
// then it answers the same JSON as edgeward's whoami. `/healthz` is its no-op route.
// Plain code: no cache of verified tokens (every request verifies the signature; jose caches the
// imported key, as `createLocalJWKSet` does by itself).
import { createLocalJWKSet, jwtVerify } from 'jose';

const CACHE_TTL_MS = 30_000;
const CACHE_MAX = 4096;
const cache = new Map(); // KV key -> { value, expires }
let jwks; // built once per isolate from env.JWKS
const windows = new Map(); // rate-limit key -> { start, count }

const json = (status, body, headers = {}) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json', ...headers } });

function refuse(status, error, description, cors) {
  const headers = { ...cors };
  if (status === 401) {
    headers['www-authenticate'] = error === 'unauthorized' ? 'Bearer realm="jose"' : `Bearer realm="jose", error="${error}"`;
  }
  return json(status, { error, error_description: description }, headers);
}

/** A KV record (parsed JSON, or null when absent), cached in the isolate for 30 s. */
async function record(env, key) {
  const now = Date.now();
  const hit = cache.get(key);
  if (hit && hit.expires > now) return hit.value;
  const value = await env.GATE.get(key, 'json');
  if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value);
  cache.set(key, { value, expires: now + CACHE_TTL_MS });
  return value;
}

/** Fixed one-minute windows: true when the request is within `limit`. */
function allow(key, limit, now) {
  const start = now - (now % 60_000);
  let w = windows.get(key);
  if (!w || w.start !== start) {
    w = { start, count: 0 };
    windows.set(key, w);
  }
  w.count += 1;
  return w.count <= limit;
}

async function whoami(request, env) {
  // 1. The partner gate, for browser calls.
  const origin = request.headers.get('origin');
  let pagePartner = null;
  let cors = {};
  if (origin) {
    const entry = await record(env, `origin:${origin}`);
    if (!entry) return refuse(403, 'origin_not_allowed', 'this origin is not on the partner allowlist');
    if (entry.status !== 'active') return refuse(403, 'partner_suspended', 'this partner is suspended');
    pagePartner = entry.partner_id;
    cors = { 'access-control-allow-origin': origin, vary: 'Origin' };
  }

  // 2. The access token.
  const auth = request.headers.get('authorization');
  const m = auth && /^Bearer ([A-Za-z0-9._~+/-]+=*)$/i.exec(auth);
  if (!m) return refuse(401, auth ? 'invalid_token' : 'unauthorized', 'a bearer access token is required', cors);
  jwks ??= createLocalJWKSet(JSON.parse(env.JWKS));
  let claims;
  try {
    ({ payload: claims } = await jwtVerify(m[1], jwks, {
      algorithms: ['EdDSA'],
      typ: 'at+jwt',
      issuer: env.ISSUER,
      audience: env.AUDIENCE,
      requiredClaims: ['exp', 'sub', 'client_id', 'scope', 'jti'],
    }));
  } catch {
    return refuse(401, 'invalid_token', 'the access token is not valid', cors);
  }
  if (await record(env, `revoked:${claims.gid || claims.jti}`)) {
    return refuse(401, 'invalid_token', 'the access token was revoked', cors);
  }
  const client = await record(env, `client:${claims.client_id}`);
  if (!client) return refuse(401, 'invalid_token', "the access token's client no longer exists", cors);
  const partner = await record(env, `partner:${client.partner_id}`);
  if (partner?.status !== 'active') return refuse(403, 'partner_suspended', "the token's partner is suspended", cors);
  if (pagePartner !== null && pagePartner !== client.partner_id) {
    return refuse(403, 'origin_not_allowed', "this origin belongs to another partner than the token's client", cors);
  }

  // 3. The scope.
  if (env.WHOAMI_SCOPE && !String(claims.scope).split(' ').includes(env.WHOAMI_SCOPE)) {
    return refuse(403, 'insufficient_scope', `this route needs the scope ${env.WHOAMI_SCOPE}`, cors);
  }

  // 4. The rate limits.
  const now = Date.now();
  const partnerOk = allow(`p:${client.partner_id}`, Number(env.API_PER_MINUTE || 6000), now);
  const clientOk = allow(`c:${claims.client_id}`, Number(env.API_PER_CLIENT_PER_MINUTE || 3000), now);
  if (!partnerOk || !clientOk) {
    return refuse(429, 'rate_limited', 'too many requests', { ...cors, 'retry-after': String(Math.ceil((60_000 - (now % 60_000)) / 1000)) });
  }

  return json(
    200,
    { sub: claims.sub, client_id: claims.client_id, partner_id: client.partner_id, scope: claims.scope, exp: claims.exp },
    cors,
  );
}

export default {
  async fetch(request, env) {
    const { pathname } = new URL(request.url);
    if (pathname === '/healthz') return new Response('ok', { headers: { 'content-type': 'text/plain' } });
    if (pathname === '/edge/whoami' && request.method === 'GET') return whoami(request, env);
    return json(404, { error: 'not_found' });
  },
};
