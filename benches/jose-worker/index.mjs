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
// `/api/...` makes the same checks and forwards the request to var ORIGIN_URL as edgeward's
// gateway does: the caller's headers less authorization, cookie, host and hop-by-hop ones, plus
// the caller's identity as headers and as a signed identity JWT (EdDSA, var IDENTITY_KEY, 60 s,
// kept per token while it has half its life left, as edgeward keeps its own); the body streams.
// Plain code: no cache of verified tokens (every request verifies the signature; jose caches the
// imported key, as `createLocalJWKSet` does by itself).
import { SignJWT, createLocalJWKSet, importJWK, jwtVerify } from 'jose';

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

/** The checks of steps 1 to 4: `{ claims, client, cors }`, or the refusal to answer with. */
async function check(request, env) {
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

  return { claims, client, cors };
}

async function whoami(request, env) {
  const checked = await check(request, env);
  if (checked instanceof Response) return checked;
  const { claims, client, cors } = checked;
  return json(
    200,
    { sub: claims.sub, client_id: claims.client_id, partner_id: client.partner_id, scope: claims.scope, exp: claims.exp },
    cors,
  );
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'proxy-authorization', 'proxy-authenticate']);
const NOT_FORWARDED = new Set(['authorization', 'cookie', 'host', 'forwarded', 'x-forwarded-for', 'cf-connecting-ip']);
const IDENTITY_TTL_S = 60;
const identities = new Map(); // access token jti -> { jwt, exp }
let identityKey; // imported once per isolate from env.IDENTITY_KEY

async function identityJwt(env, claims, partnerId) {
  const now = Math.floor(Date.now() / 1000);
  const held = identities.get(claims.jti);
  if (held && now + IDENTITY_TTL_S / 2 < held.exp) return held.jwt;
  identityKey ??= await importJWK(JSON.parse(env.IDENTITY_KEY), 'EdDSA');
  const exp = now + IDENTITY_TTL_S;
  const jwt = await new SignJWT({ sub: claims.sub, client_id: claims.client_id, partner_id: partnerId, scope: claims.scope, ati: claims.jti })
    .setProtectedHeader({ alg: 'EdDSA', typ: 'edgeward-identity+jwt' })
    .setIssuer(env.ISSUER)
    .setAudience(env.ORIGIN_URL)
    .setIssuedAt(now)
    .setExpirationTime(exp)
    .sign(identityKey);
  if (identities.size >= CACHE_MAX) identities.delete(identities.keys().next().value);
  identities.set(claims.jti, { jwt, exp });
  return jwt;
}

async function forward(request, env) {
  const checked = await check(request, env);
  if (checked instanceof Response) return checked;
  const { claims, client, cors } = checked;
  const headers = new Headers(request.headers);
  for (const name of [...headers.keys()]) {
    if (HOP_BY_HOP.has(name) || NOT_FORWARDED.has(name) || name.startsWith('x-edgeward-')) headers.delete(name);
  }
  headers.set('x-edgeward-sub', claims.sub);
  headers.set('x-edgeward-client', claims.client_id);
  headers.set('x-edgeward-partner', client.partner_id);
  headers.set('x-edgeward-scope', claims.scope);
  headers.set('x-edgeward-identity', await identityJwt(env, claims, client.partner_id));
  const url = new URL(request.url);
  const res = await fetch(`${env.ORIGIN_URL}${url.pathname}${url.search}`, {
    method: request.method,
    headers,
    body: request.body,
    redirect: 'manual',
  });
  const back = new Headers(res.headers);
  for (const name of [...back.keys()]) if (HOP_BY_HOP.has(name)) back.delete(name);
  for (const [k, v] of Object.entries(cors)) back.set(k, v);
  return new Response(res.body, { status: res.status, headers: back });
}

export default {
  async fetch(request, env) {
    const { pathname } = new URL(request.url);
    if (pathname === '/healthz') return new Response('ok', { headers: { 'content-type': 'text/plain' } });
    if (pathname === '/edge/whoami' && request.method === 'GET') return whoami(request, env);
    if (pathname.startsWith('/api/')) return forward(request, env);
    return json(404, { error: 'not_found' });
  },
};
