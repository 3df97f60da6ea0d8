// Load-tests the built Worker served directly by local workerd (Miniflare, no wrangler proxy) and
// prints one markdown table per section, all measured in one run:
//  1. edgeward's edge checks: GET /edge/whoami (partner gate for the page's Origin, access token,
//     partner active, rate limit; answered at the edge) against the no-op /healthz of the same
//     Worker; the token endpoint too.
//  2. the same checks hand-written in JavaScript with `jose` (benches/jose-worker), served the
//     same way, against its own no-op route; and edgeward's throughput divided by its.
//  3. the forward path: GET /api/... through edgeward to a local origin (benches/origin.mjs)
//     against the same request sent straight to that origin, and through the jose Worker (the
//     same checks, identity headers and a signed identity JWT kept per token, then the forward).
//     The CPU column is the Worker's workerd process; the forward itself (workerd's HTTP client)
//     is in it for both Workers.
//  4. bundle sizes (`wrangler deploy --dry-run`) of edgeward, the jose Worker and the
//     workers-oauth-provider Worker, and CPU time per request.
// Then the per-flow timings (code flow, linking, automatic login), and:
//  5. the returning user's code flow against Cloudflare's `@cloudflare/workers-oauth-provider`
//     (benches/oauth-provider-worker, on the library's defaults, its own Miniflare): authorize
//     (signed in, consent given) → 302 with a code → POST of the code with the PKCE verifier and
//     client_secret_basic to the token endpoint. Sequential flows, client-side wall time on
//     loopback, one flow of each row in turn: edgeward with scope openid profile (as the per-flow
//     timings: an ID token too), edgeward with scope profile (no ID token, like the provider), the
//     provider; mean, p50, max, and edgeward ÷ provider. Before timing, both must answer the
//     exchange 200 with an access token and refuse a second exchange of the same code, and the
//     provider's token must open its apiRoute (and no longer once its code was replayed).
//  6. cold start: a new Miniflare (a new workerd process) per sample, with the dry-run bundle,
//     and its first and second GET /healthz, for edgeward, the jose Worker, the provider Worker
//     and two JS-only baselines (see "Cold start" below).
//  7. issue 15's aims, each against this run's figures, and whether it is met.
//
// Every wrk run is one route for `seconds`; the routes are measured in alternating rounds and the
// median round is reported: on a small machine one round is noisy. Each run that presents an
// access token gets a fresh one (they live 300 s).
//
// CPU time per request: utime + stime of the process that served the run (the workerd process
// Miniflare started, all its threads; for the origin, its node process), read from
// /proc/<pid>/stat before and after the wrk run and divided by the requests wrk completed. It is
// the whole runtime's work, not only the Worker's code: HTTP parsing, Miniflare's entry worker
// that routes each request, edgeward's request-log line. Clock ticks are 10 ms, so a short run is
// coarse; the no-op row gives the runtime's share. The bench host column is this node process
// (both Miniflares, reading each Worker's output): on 2 cores it competes with wrk and workerd,
// so requests/s also reflects it.
//
// Cold start (section 6). workerd compiles a Worker's modules and evaluates their top level when
// its process starts, before it listens, not at the first request (a top-level console.log of a
// Worker is printed before Miniflare's `ready` resolves). edgeward's glue (worker-build's shim)
// imports the .wasm as a CompiledWasm module, which workerd compiles when it loads the Worker, and
// instantiates it (`new WebAssembly.Instance`, then `__wbindgen_start`) at its top level. So
// compiling and instantiating the WebAssembly module is inside "start → ready", and the first
// request carries only what was left for first use (code V8 compiles on a function's first call,
// whatever the Worker sets up on its first request) plus the request's own work. Hence the columns: start → ready (new Miniflare() until `ready`);
// the first GET /healthz; a second, warm one; first − warm (the first-use cost); start → first
// answer; the workerd process's CPU time from its start to the first answer (/proc, 10 ms ticks:
// the isolate's start without the wall-clock noise); and this process's CPU time until ready
// (Miniflare reading and parsing the bundle, and spawning workerd: local tooling, no part of a
// deployment, but in the wall times). "− baseline" subtracts a JS-only baseline's median, which
// takes out what every Worker pays locally (spawning workerd, Miniflare's own services and entry
// worker, one local service per binding): for the peers a JS no-op Worker with one KV namespace
// (as they have), for edgeward a JS stub that declares every binding its wrangler.toml does (its
// Durable Object classes empty), started the same way as edgeward (tests/e2e/harness.mjs
// startWorker, one signing key set for all samples so no key generation is timed). The samples of
// the five Workers are taken in turn. What this is not: Cloudflare's cold start, which also
// fetches the script and may reuse compiled code; it is the cost of compiling and starting each
// bundle in workerd on this machine.
// Usage: node scripts/bench.mjs [seconds] [connections] [rounds]
import { spawnSync, execFileSync } from 'node:child_process';
import { writeFileSync, mkdtempSync, mkdirSync, rmSync, readFileSync, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { Miniflare } from 'miniflare';
import { unstable_readConfig } from 'wrangler';
import { startWorker, freePort, ROOT } from '../tests/e2e/harness.mjs';
import { run, startLocalOrigin } from './lib/processes.mjs';
import { CookieJar, pkce, basicAuth, browserFlow, confirmLink, formFields } from '../tests/e2e/oauth.mjs';
import { randomBytes, randomUUID } from 'node:crypto';
import { LINK_REQUEST_TYP, LOGIN_ASSERTION_TYP, generateJwk, initialKeySet, publicJwk, signJwt } from './lib/jwk.mjs';

const seconds = Number(process.argv[2] || 8);
const connections = Number(process.argv[3] || 16);
const rounds = Number(process.argv[4] || 3);
const ORIGIN = 'https://bench.partner.example';
const JOSE_CONFIG = path.join(ROOT, 'benches', 'jose-worker', 'wrangler.toml');
const PROVIDER_CONFIG = path.join(ROOT, 'benches', 'oauth-provider-worker', 'wrangler.toml');
const FLOWS = 20; // sequential flows per timing row
const configs = new Map();
/** A wrangler config, read once (reading one is slow enough to blur section 6's timings). */
const readConfig = (config) => configs.get(config) ?? configs.set(config, unstable_readConfig({ config })).get(config);
const PROVIDER_VERSION = JSON.parse(
  readFileSync(path.join(ROOT, 'node_modules', '@cloudflare', 'workers-oauth-provider', 'package.json'), 'utf8'),
).version;
const COLD_SAMPLES = 15; // fresh workerd processes per Worker in section 6 (at least 5)
if (seconds >= 280) throw new Error('rounds must stay well under the access tokens’ 300 s');

/**
 * The bench partner's rate limits, per minute: the one place to set them. edgeward's defaults
 * (6,000 API calls and 600 token requests a minute per partner) would turn most of a load test
 * into 429s. The jose Worker gets the same API limits.
 */
const BENCH_LIMITS = {
  api_per_minute: 10_000_000,
  api_per_client_per_minute: 10_000_000,
  token_per_minute: 10_000_000,
  token_per_client_per_minute: 10_000_000,
};

/**
 * Creates or replaces a partner with `spec` and the bench's rate limits. A Worker whose admin
 * API does not know `rate_limits` yet (it then has no limits either) gets the spec without them.
 * Returns whether the limits were set.
 */
async function putPartner(w, id, spec) {
  const res = await w.admin(`/partners/${id}`, { method: 'PUT', body: { ...spec, rate_limits: BENCH_LIMITS } });
  if (res.ok) return true;
  const text = await res.text();
  if (res.status === 400 && text.includes('rate_limits') && text.includes('unknown field')) {
    const plain = await w.admin(`/partners/${id}`, { method: 'PUT', body: spec });
    if (plain.ok) return false;
    throw new Error(`PUT partner ${id}: ${plain.status} ${await plain.text()}`);
  }
  throw new Error(`PUT partner ${id}: ${res.status} ${text}`);
}

const headerArgs = (headers) => Object.entries(headers).flatMap(([k, v]) => ['-H', `${k}: ${v}`]);

const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/** The fields of /proc/<pid>/stat after the command name: [0] is field 3 (state). */
function statFields(pid) {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return { comm: s.slice(s.indexOf('(') + 1, s.lastIndexOf(')')), f: s.slice(s.lastIndexOf(')') + 2).split(' ') };
}

/** CPU time (user + system, all threads) a process has used so far, in ms. */
function cpuMs(pid) {
  const { f } = statFields(pid);
  return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;
}

/** The workerd processes this process started (Miniflare spawns workerd directly). */
function workerdChildren() {
  const pids = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const { comm, f } = statFields(name);
      if (comm === 'workerd' && Number(f[1]) === process.pid) pids.push(Number(name));
    } catch {
      // the process ended meanwhile
    }
  }
  return pids;
}

/** Starts something that spawns one workerd, and returns it with that workerd's pid. */
async function withWorkerdPid(start) {
  const before = new Set(workerdChildren());
  const started = await start();
  const pids = workerdChildren().filter((p) => !before.has(p));
  if (pids.length !== 1) throw new Error(`expected one new workerd process, found ${pids.length}`);
  return [started, pids[0]];
}

let pids = {}; // target -> pid whose CPU time is read

async function wrk(url, headers = {}, script = null) {
  const extra = script ? ['-s', script] : [];
  const cpuBefore = Object.fromEntries(Object.entries(pids).map(([t, p]) => [t, cpuMs(p)]));
  const r = await run('wrk', ['-t2', `-c${connections}`, `-d${seconds}s`, '--latency', ...extra, ...headerArgs(headers), url]);
  const cpu = Object.fromEntries(Object.entries(pids).map(([t, p]) => [t, cpuMs(p) - cpuBefore[t]]));
  if (r.status !== 0) throw new Error(`wrk failed: ${r.stderr}`);
  const num = (re) => {
    const m = r.stdout.match(re);
    if (!m) throw new Error(`cannot parse wrk output:\n${r.stdout}`);
    return m;
  };
  const toMs = ([, v, unit]) => Number(v) * ({ us: 0.001, ms: 1, s: 1000, m: 60000 }[unit]);
  const non2xx = r.stdout.match(/Non-2xx or 3xx responses: (\d+)/);
  const sock = r.stdout.match(/Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/);
  const requests = Number(num(/(\d+) requests in/)[1]);
  return {
    rps: Number(num(/Requests\/sec:\s+([\d.]+)/)[1]),
    p50: toMs(num(/^\s+50%\s+([\d.]+)(us|ms|s|m)\s*$/m)),
    p99: toMs(num(/^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$/m)),
    // wrk's "Non-2xx or 3xx" answers plus its socket errors (timeouts under load count here).
    errors: (non2xx ? Number(non2xx[1]) : 0) + (sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0),
    non2xx: non2xx ? Number(non2xx[1]) : 0,
    // µs of CPU per completed request, per process
    cpuUs: Object.fromEntries(Object.entries(cpu).map(([t, ms]) => [t, requests ? (ms * 1000) / requests : NaN])),
  };
}

const percentile = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];
const median = (xs) => percentile(xs, 50);

/** `wrangler deploy --dry-run` of a config: the bundle it would upload, and its sizes. */
function dryRun(config, outdir) {
  const r = spawnSync(
    path.join(ROOT, 'node_modules', '.bin', 'wrangler'),
    ['deploy', '--dry-run', '--outdir', outdir, ...(config ? ['--config', config] : [])],
    { cwd: ROOT, encoding: 'utf8', env: { ...process.env, EDGEWARD_SKIP_BUILD: '1', WRANGLER_SEND_METRICS: 'false' } },
  );
  const m = `${r.stdout}${r.stderr}`.match(/Total Upload: ([\d.]+ \w+) \/ gzip: ([\d.]+ \w+)/);
  if (r.status !== 0 || !m) throw new Error(`wrangler deploy --dry-run ${config ?? ''} failed:\n${r.stdout}${r.stderr}`);
  return { dir: outdir, total: m[1], gzip: m[2] };
}

/** The jose Worker, served by its own Miniflare (its own workerd), with its KV records. */
async function startJoseWorker(bundle, vars, records) {
  const mf = new Miniflare(joseOptions(bundle, vars));
  const url = (await mf.ready).origin;
  const kv = await mf.getKVNamespace('GATE');
  for (const [k, v] of Object.entries(records)) await kv.put(k, JSON.stringify(v));
  return { url, stop: () => mf.dispose() };
}

function joseOptions(bundle, vars = {}) {
  const config = readConfig(JOSE_CONFIG);
  return {
    name: 'jose',
    modules: true,
    scriptPath: path.join(bundle, 'index.js'),
    modulesRoot: bundle,
    compatibilityDate: config.compatibility_date,
    compatibilityFlags: config.compatibility_flags,
    kvNamespaces: ['GATE'],
    bindings: { ...config.vars, ...vars },
    host: '127.0.0.1',
    port: 0,
    handleRuntimeStdio(stdout, stderr) {
      stdout.resume();
      // Not pipe(): a pipe per Miniflare would pile listeners onto process.stderr (section 6).
      stderr.on('data', (chunk) => process.stderr.write(chunk));
    },
  };
}

/**
 * The workers-oauth-provider Worker, served by its own Miniflare (its own workerd), with one
 * client made through its setup route (the library's createClient): confidential,
 * client_secret_basic, the bench partner's redirect URI. Returns it with that client.
 */
async function startProviderWorker(bundle) {
  const setupToken = randomBytes(24).toString('hex');
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const mf = new Miniflare(providerOptions(bundle, { BENCH_SETUP_TOKEN: setupToken, RESOURCE: `${url}/api` }, port));
  await mf.ready;
  const res = await fetch(`${url}/bench/clients`, {
    method: 'POST',
    headers: { authorization: `Bearer ${setupToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ clientName: 'Bench web', redirectUris: [`${ORIGIN}/cb`], tokenEndpointAuthMethod: 'client_secret_basic' }),
  });
  const client = JSON.parse(await expectStatus(res, 201, 'the provider’s client setup'));
  if (!client.clientSecret) throw new Error(`the provider made a client without a secret: ${JSON.stringify(client)}`);
  return { url, client, stop: () => mf.dispose() };
}

// What the provider logs on every refused request (its default onError), and once at start.
const PROVIDER_NOISE = /^(OAuth error response: |CIMD \(Client ID Metadata Document\) is disabled)/;

/** Miniflare's options for the provider Worker; on port 0 (any), its RESOURCE stays the default. */
function providerOptions(bundle, vars = {}, port = 0) {
  const config = readConfig(PROVIDER_CONFIG);
  return {
    name: 'oauth-provider',
    modules: true,
    scriptPath: path.join(bundle, 'index.js'),
    modulesRoot: bundle,
    compatibilityDate: config.compatibility_date,
    compatibilityFlags: config.compatibility_flags,
    kvNamespaces: ['OAUTH_KV'],
    bindings: { ...config.vars, ...vars },
    host: '127.0.0.1',
    port,
    handleRuntimeStdio(stdout, stderr) {
      stdout.resume();
      let buf = '';
      stderr.on('data', (chunk) => {
        buf += chunk;
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          if (!PROVIDER_NOISE.test(line.trim())) process.stderr.write(`${line}\n`);
        }
      });
    },
  };
}

/**
 * One code flow of edgeward's bench client in the browser `jar`: ms, and the token response.
 * With `openid` in the scope the token response has an ID token too.
 */
async function edgewardFlow(w, client, jar, scope = 'openid profile') {
  const { verifier, challenge } = pkce();
  const start = performance.now();
  const { callback } = await browserFlow(w, {
    client, username: 'bench', password: 'bench password 123', challenge, scope, jar,
  });
  const body = new URLSearchParams({ grant_type: 'authorization_code', code: callback.searchParams.get('code'), redirect_uri: client.redirect_uris[0], code_verifier: verifier });
  const res = await fetch(`${w.url}/oauth2/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(client.client_id, client.client_secret) },
    body,
  });
  const text = await res.text();
  const ms = performance.now() - start;
  if (res.status !== 200) throw new Error(`token answered ${res.status}: ${text}`);
  return { ms, tokens: JSON.parse(text), body };
}

/**
 * One returning user's code flow at the provider Worker `p`: its /authorize completes at once
 * (302 with a code), then the code, the PKCE verifier and client_secret_basic go to its token
 * endpoint. The same requests as edgeward's flow, without cookies (the provider Worker's one user
 * is fixed in its source, not found through a session).
 */
async function providerFlow(p) {
  const { verifier, challenge } = pkce();
  const start = performance.now();
  const params = {
    response_type: 'code', client_id: p.client.clientId, redirect_uri: p.client.redirectUris[0], scope: 'openid profile',
    state: 'st-1', code_challenge: challenge, code_challenge_method: 'S256',
  };
  const auth = await fetch(`${p.url}/authorize?${new URLSearchParams(params)}`, { redirect: 'manual' });
  await auth.arrayBuffer();
  const location = auth.headers.get('location');
  if (auth.status !== 302 || !location?.startsWith(`${ORIGIN}/cb?`)) throw new Error(`the provider's authorize answered ${auth.status} ${location}`);
  const callback = new URL(location);
  if (callback.searchParams.get('state') !== 'st-1') throw new Error(`the provider lost the state: ${location}`);
  const body = new URLSearchParams({ grant_type: 'authorization_code', code: callback.searchParams.get('code'), redirect_uri: params.redirect_uri, code_verifier: verifier });
  const res = await fetch(`${p.url}/oauth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(p.client.clientId, p.client.clientSecret) },
    body,
  });
  const text = await res.text();
  const ms = performance.now() - start;
  if (res.status !== 200) throw new Error(`the provider's token endpoint answered ${res.status}: ${text}`);
  return { ms, tokens: JSON.parse(text), body };
}

/**
 * Times complete code flows, one after another (a person's flow is sequential). A returning
 * user's browser signs in once, untimed, first: every timed flow then finds its session and
 * consent.
 */
async function flows(w, client, n, { returning }) {
  const times = [];
  const jar = new CookieJar(w.url);
  if (returning) await edgewardFlow(w, client, jar);
  for (let i = 0; i < n; i++) {
    times.push((await edgewardFlow(w, client, returning ? jar : new CookieJar(w.url))).ms);
  }
  return times;
}

/**
 * Section 5: `n` returning-user flows at edgeward (scope openid profile, as `flows`), at edgeward
 * without an ID token (scope profile: what the provider issues) and at the provider, one of each
 * in turn (after two untimed ones each), so all see the same machine.
 */
async function peerFlows(w, client, p, n) {
  const jar = new CookieJar(w.url);
  for (let i = 0; i < 2; i++) {
    await edgewardFlow(w, client, jar);
    await edgewardFlow(w, client, jar, 'profile');
    await providerFlow(p);
  }
  const ours = [];
  const oursOAuth = [];
  const theirs = [];
  for (let i = 0; i < n; i++) {
    ours.push((await edgewardFlow(w, client, jar)).ms);
    oursOAuth.push((await edgewardFlow(w, client, jar, 'profile')).ms);
    theirs.push((await providerFlow(p)).ms);
  }
  return { ours, oursOAuth, theirs };
}

/** The token endpoint must refuse a second exchange of a code. */
async function expectReplayRefused(url, authorization, body, what) {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', authorization }, body });
  const text = await res.text();
  if (res.status !== 400 || JSON.parse(text).error !== 'invalid_grant') {
    throw new Error(`${what}: a second exchange of the same code answered ${res.status}: ${text}`);
  }
}

// The no-op route of the cold-start baselines, as the Workers answer theirs.
const NOOP_FETCH = `fetch(request) {
    if (new URL(request.url).pathname === '/healthz') return new Response('ok', { headers: { 'content-type': 'text/plain' } });
    return new Response('not found', { status: 404 });
  }`;

/** A Miniflare of its own for `options`, as { url, stop }. */
async function plainMiniflare(options) {
  const mf = new Miniflare(options);
  const url = (await mf.ready).origin;
  return { url, stop: () => mf.dispose() };
}

/** The JS-only baseline of the peers: a no-op Worker with one KV namespace. */
const noopOptions = () => ({
  name: 'noop',
  modules: true,
  script: `export default { ${NOOP_FETCH} };`,
  compatibilityDate: readConfig(JOSE_CONFIG).compatibility_date,
  kvNamespaces: ['KV'],
  host: '127.0.0.1',
  port: 0,
});

/**
 * The JS-only baseline of edgeward: a stub with the no-op route that exports every Durable
 * Object class edgeward's wrangler.toml binds (empty), so that startWorker gives it all of
 * edgeward's bindings. Written into `dir`.
 */
function writeEdgewardStub(dir) {
  const config = readConfig(path.join(ROOT, 'wrangler.toml'));
  const classes = [...new Set(config.durable_objects.bindings.map((b) => b.class_name))];
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'index.js'), [
    "import { DurableObject } from 'cloudflare:workers';",
    ...classes.map((c) => `export class ${c} extends DurableObject {}`),
    `export default { ${NOOP_FETCH}, async queue() {} };`,
  ].join('\n'));
  return dir;
}

/**
 * One cold start: `start` makes a new Miniflare (a new workerd); then the first and a second
 * GET /healthz. Times in ms; `cpu` is the workerd process's CPU time from its start to the first
 * answer, `nodeCpu` this process's until ready (Miniflare reading the bundle and starting workerd).
 */
async function coldSample(start) {
  const before = new Set(workerdChildren());
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const worker = await start();
  const ready = performance.now() - t0;
  const { user, system } = process.cpuUsage(cpu0);
  try {
    let t = performance.now();
    const first = await fetch(`${worker.url}/healthz`);
    await expectStatus(first, 200, 'a cold /healthz');
    const firstMs = performance.now() - t;
    const pid = workerdChildren().filter((p) => !before.has(p));
    if (pid.length !== 1) throw new Error(`expected one new workerd process, found ${pid.length}`);
    const cpu = cpuMs(pid[0]);
    t = performance.now();
    await expectStatus(await fetch(`${worker.url}/healthz`), 200, 'a warm /healthz');
    const warm = performance.now() - t;
    return { ready, first: firstMs, warm, startToFirst: ready + firstMs, cpu, nodeCpu: (user + system) / 1000 };
  } finally {
    await worker.stop();
  }
}

/** COLD_SAMPLES cold starts of each target, the targets in turn. */
async function coldStarts(targets) {
  const samples = Object.fromEntries(targets.map((t) => [t.id, []]));
  for (let i = 0; i < COLD_SAMPLES; i++) {
    for (const t of targets) samples[t.id].push(await coldSample(t.start));
  }
  return samples;
}

const partnerKey = generateJwk('EdDSA');
const partnerJwt = (typ, payload) => signJwt(partnerKey, { alg: 'EdDSA', kid: partnerKey.kid, typ }, payload);

/** Linking flows (login, consent, allow) for fresh users, then automatic logins. */
async function linkFlows(w, n) {
  const linking = [];
  const auto = [];
  for (let i = 0; i < n; i++) {
    await w.admin(`/users/linker${i}`, { method: 'PUT', body: { password: 'bench password 123', name: `Linker ${i}` } });
  }
  for (let i = 0; i < n; i++) {
    const now = Math.floor(Date.now() / 1000);
    const request = partnerJwt(LINK_REQUEST_TYP, {
      iss: ORIGIN, aud: w.url, sub: `bench-${i}`, jti: randomUUID(), iat: now, exp: now + 240, return_to: `${ORIGIN}/linked`,
      account_label: `bench user ${i}`, state: `bench-state-${i}`,
    });
    const jar = new CookieJar(w.url);
    const start = performance.now();
    let res = await jar.fetch(`/link?request=${encodeURIComponent(request)}`);
    res = await jar.fetch(res.headers.get('location'));
    res = await jar.postForm('/login', { ...formFields(await res.text()), username: `linker${i}`, password: 'bench password 123' });
    res = await jar.fetch(res.headers.get('location'));
    res = await jar.postForm('/link', { ...formFields(await res.text()), decision: 'allow' });
    if (res.status !== 303) throw new Error(`link answered ${res.status}`);
    res = await confirmLink(w.url, partnerKey, request, res.headers.get('location'));
    if (res.status !== 200) throw new Error(`link confirmation answered ${res.status}`);
    linking.push(performance.now() - start);
  }
  for (let i = 0; i < n; i++) {
    const now = Math.floor(Date.now() / 1000);
    const assertion = partnerJwt(LOGIN_ASSERTION_TYP, { iss: ORIGIN, aud: w.url, sub: `bench-${i}`, jti: randomUUID(), exp: now + 100 });
    const start = performance.now();
    // As the partner's page posts it: the browser names the page's origin.
    const res = await fetch(`${w.url}/login/auto`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: ORIGIN },
      body: new URLSearchParams({ assertion, return_to: '/account' }),
    });
    if (res.status !== 303) throw new Error(`auto login answered ${res.status}`);
    await res.arrayBuffer();
    auto.push(performance.now() - start);
  }
  return { linking, auto };
}

/** The same token with one signature character changed: must be refused. */
function forged(token) {
  const i = token.lastIndexOf('.') + 10;
  return token.slice(0, i) + (token[i] === 'A' ? 'B' : 'A') + token.slice(i + 1);
}

async function expectStatus(res, status, what) {
  const text = await res.text();
  if (res.status !== status) throw new Error(`${what} answered ${res.status}, expected ${status}: ${text}`);
  return text;
}

const tmp = mkdtempSync(path.join(os.tmpdir(), 'edgeward-bench-'));
const edgewardBundle = dryRun(null, path.join(tmp, 'edgeward'));
const joseBundle = dryRun(JOSE_CONFIG, path.join(tmp, 'jose'));
const providerBundle = dryRun(PROVIDER_CONFIG, path.join(tmp, 'provider'));
const origin = await startLocalOrigin();
let w;
let jose;
let provider;
try {
  [w, pids.edgeward] = await withWorkerdPid(() =>
    startWorker({ keepLogs: false, vars: { ORIGIN_URL: origin.url, API_SCOPES: JSON.stringify({ '/api': 'api' }) } }),
  );
  const limitsSet = await putPartner(w, 'bench', { name: 'Bench Partner', origins: [ORIGIN], jwks: { keys: [publicJwk(partnerKey)] } });
  const svc = await (await w.admin('/partners/bench/clients', {
    method: 'POST',
    body: { name: 'Bench service', grant_types: ['client_credentials'], scopes: ['api'] },
  })).json();
  const web = await (await w.admin('/partners/bench/clients', {
    method: 'POST',
    body: { name: 'Bench web', redirect_uris: [`${ORIGIN}/cb`], scopes: ['openid', 'profile'] },
  })).json();
  await w.admin('/users/bench', { method: 'PUT', body: { password: 'bench password 123', name: 'Bench User' } });

  let token = null;
  async function freshToken() {
    const res = await w.fetch('/oauth2/token', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(svc.client_id, svc.client_secret) },
      body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'api' }).toString(),
    });
    token = JSON.parse(await expectStatus(res, 200, 'the token endpoint')).access_token;
  }
  await freshToken();

  const jwks = await (await w.fetch('/.well-known/jwks.json')).json();
  [jose, pids.jose] = await withWorkerdPid(() =>
    startJoseWorker(
      joseBundle.dir,
      {
        ISSUER: w.url,
        AUDIENCE: `${w.url}/api`,
        JWKS: JSON.stringify(jwks),
        API_PER_MINUTE: String(BENCH_LIMITS.api_per_minute),
        API_PER_CLIENT_PER_MINUTE: String(BENCH_LIMITS.api_per_client_per_minute),
        ORIGIN_URL: origin.url,
        IDENTITY_KEY: JSON.stringify(generateJwk('EdDSA')),
      },
      {
        [`origin:${ORIGIN}`]: { partner_id: 'bench', status: 'active' },
        [`client:${svc.client_id}`]: { partner_id: 'bench' },
        'partner:bench': { status: 'active' },
      },
    ),
  );
  pids.origin = origin.pid;
  // This process hosts both Miniflares: it reads each Worker's stdout (edgeward's request-log
  // line; the jose Worker writes none), and shares the two cores with wrk and workerd.
  pids.host = process.pid;

  // Both Workers must do the same job: same answer for the same token, forgeries refused.
  const whoHeaders = () => ({ Origin: ORIGIN, Authorization: `Bearer ${token}` });
  const ours = JSON.parse(await expectStatus(await w.fetch('/edge/whoami', { headers: whoHeaders() }), 200, 'edgeward whoami'));
  const theirs = JSON.parse(await expectStatus(await fetch(`${jose.url}/edge/whoami`, { headers: whoHeaders() }), 200, 'jose whoami'));
  if (!isDeepStrictEqual(ours, theirs)) throw new Error(`the whoami answers differ: ${JSON.stringify(ours)} vs ${JSON.stringify(theirs)}`);
  const bad = { Origin: ORIGIN, Authorization: `Bearer ${forged(token)}` };
  await expectStatus(await w.fetch('/edge/whoami', { headers: bad }), 401, 'edgeward whoami with a forged token');
  await expectStatus(await fetch(`${jose.url}/edge/whoami`, { headers: bad }), 401, 'jose whoami with a forged token');
  await expectStatus(await w.fetch('/edge/whoami', { headers: { ...whoHeaders(), Origin: 'https://evil.example' } }), 403, 'edgeward whoami, unknown origin');
  await expectStatus(await fetch(`${jose.url}/edge/whoami`, { headers: { ...whoHeaders(), Origin: 'https://evil.example' } }), 403, 'jose whoami, unknown origin');
  const forwardedText = await expectStatus(await w.fetch('/api/v1/bench', { headers: whoHeaders() }), 200, 'edgeward /api');
  if (JSON.parse(forwardedText).origin !== 'ok') throw new Error(`/api did not reach the origin: ${forwardedText}`);
  await expectStatus(await fetch(`${origin.url}/api/v1/bench`), 200, 'the origin');
  const joseForwarded = await expectStatus(await fetch(`${jose.url}/api/v1/bench`, { headers: whoHeaders() }), 200, 'jose /api');
  if (JSON.parse(joseForwarded).origin !== 'ok') throw new Error(`jose's /api did not reach the origin: ${joseForwarded}`);
  await expectStatus(await fetch(`${jose.url}/api/v1/bench`, { headers: bad }), 401, 'jose /api with a forged token');

  // Both code flows must do their job: a code exchanged for an access token once, and only once;
  // the provider's token must open its apiRoute (and, once its code was replayed, no longer).
  provider = await startProviderWorker(providerBundle.dir);
  const ourFlow = await edgewardFlow(w, web, new CookieJar(w.url));
  if (typeof ourFlow.tokens.access_token !== 'string') throw new Error(`edgeward's code exchange gave no access token: ${JSON.stringify(ourFlow.tokens)}`);
  await expectReplayRefused(`${w.url}/oauth2/token`, basicAuth(web.client_id, web.client_secret), ourFlow.body, 'edgeward');
  const theirFlow = await providerFlow(provider);
  if (typeof theirFlow.tokens.access_token !== 'string') throw new Error(`the provider's code exchange gave no access token: ${JSON.stringify(theirFlow.tokens)}`);
  const providerApi = () => fetch(`${provider.url}/api/whoami`, { headers: { authorization: `Bearer ${theirFlow.tokens.access_token}` } });
  const who = JSON.parse(await expectStatus(await providerApi(), 200, 'the provider\'s apiRoute'));
  if (who.userId !== 'bench' || who.clientId !== provider.client.clientId) throw new Error(`the provider's apiRoute answered ${JSON.stringify(who)}`);
  await expectReplayRefused(`${provider.url}/oauth/token`, basicAuth(provider.client.clientId, provider.client.clientSecret), theirFlow.body, 'the provider');
  await expectStatus(await providerApi(), 401, 'the provider\'s apiRoute after the code was replayed');

  const tokenScript = path.join(tmp, 'token.lua');
  writeFileSync(tokenScript, [
    'wrk.method = "POST"',
    'wrk.body = "grant_type=client_credentials&scope=api"',
    'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"',
    `wrk.headers["Authorization"] = "${basicAuth(svc.client_id, svc.client_secret)}"`,
  ].join('\n'));
  const routes = [
    { id: 'e-noop', target: 'edgeward', name: 'no-op /healthz', url: `${w.url}/healthz` },
    { id: 'e-who', target: 'edgeward', name: 'GET /edge/whoami (Origin + bearer token)', url: `${w.url}/edge/whoami`, headers: whoHeaders },
    { id: 'e-token', target: 'edgeward', name: 'token endpoint (client_credentials, signs a JWT)', url: `${w.url}/oauth2/token`, script: tokenScript },
    { id: 'j-noop', target: 'jose', name: 'no-op /healthz', url: `${jose.url}/healthz` },
    { id: 'j-who', target: 'jose', name: 'GET /edge/whoami (Origin + bearer token)', url: `${jose.url}/edge/whoami`, headers: whoHeaders },
    { id: 'o-direct', target: 'origin', name: 'straight to the origin', url: `${origin.url}/api/v1/bench`, headers: whoHeaders },
    { id: 'e-api', target: 'edgeward', name: 'through edgeward: checks, identity headers, forward', url: `${w.url}/api/v1/bench`, headers: whoHeaders },
    { id: 'j-api', target: 'jose', name: 'through the jose Worker: the same checks, identity headers, forward', url: `${jose.url}/api/v1/bench`, headers: whoHeaders },
  ];
  const start = performance.now();
  // Warm every route (JIT, isolate, caches), then measure.
  for (const r of routes) {
    if (r.headers) await freshToken();
    await run('wrk', ['-t1', '-c4', '-d2s', ...(r.script ? ['-s', r.script] : []), ...headerArgs(r.headers?.() ?? {}), r.url]);
  }
  const samples = Object.fromEntries(routes.map((r) => [r.id, []]));
  for (let round = 0; round < rounds; round++) {
    for (const r of routes) {
      if (r.headers) await freshToken();
      samples[r.id].push(await wrk(r.url, r.headers?.() ?? {}, r.script));
    }
  }
  const measuredS = (performance.now() - start) / 1000;
  // The median round by throughput; CPU per request is the median over rounds, per process.
  const res = Object.fromEntries(routes.map((r) => {
    const runs = samples[r.id];
    const m = [...runs].sort((a, b) => a.rps - b.rps)[Math.floor(runs.length / 2)];
    const cpu = Object.fromEntries(Object.keys(pids).map((t) => [t, median(runs.map((x) => x.cpuUs[t]))]));
    return [r.id, { ...r, ...m, cpu }];
  }));
  const f0 = (x) => (Number.isFinite(x) ? x.toFixed(0) : '—');
  const f2 = (x) => (Number.isFinite(x) ? x.toFixed(2) : '—');
  const row = (cells) => console.log(`| ${cells.join(' | ')} |`);

  console.log(
    `\nwrk: ${rounds} alternating rounds of ${seconds}s per route (median round shown), ${connections} connections, ` +
      `2 threads, ${os.cpus().length} cores; each Worker served by its own Miniflare (workerd). ` +
      `CPU µs/request: the serving process's CPU time (/proc/<pid>/stat utime+stime) over the run, divided by the requests served ` +
      `(the whole runtime, not only the Worker's code). Rate limits of the bench partner: ${limitsSet ? 'raised for the bench' : 'not settable on this build (no rate_limits in the admin API)'}.`,
  );

  console.log('\n### 1. edgeward: the edge checks against its no-op route\n');
  row(['route', 'requests/s', 'p50 ms', 'p99 ms', 'non-2xx / socket errors', 'workerd CPU µs/request', 'ratio to no-op', 'bench host (node) CPU µs/request']);
  row(['---', '---:', '---:', '---:', '---:', '---:', '---:', '---:']);
  for (const id of ['e-noop', 'e-who', 'e-token']) {
    const r = res[id];
    row([r.name, f0(r.rps), f2(r.p50), f2(r.p99), `${r.non2xx} / ${r.errors - r.non2xx}`, f0(r.cpu.edgeward), f2(r.rps / res['e-noop'].rps), f0(r.cpu.host)]);
  }

  console.log('\n### 2. the same checks hand-written with jose (benches/jose-worker)\n');
  row(['route', 'requests/s', 'p50 ms', 'p99 ms', 'non-2xx / socket errors', 'workerd CPU µs/request', 'ratio to no-op', 'bench host (node) CPU µs/request', 'edgeward ÷ jose (requests/s)', 'edgeward ÷ jose (workerd CPU)']);
  row(['---', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:']);
  for (const [id, ours] of [['j-noop', 'e-noop'], ['j-who', 'e-who']]) {
    const r = res[id];
    row([r.name, f0(r.rps), f2(r.p50), f2(r.p99), `${r.non2xx} / ${r.errors - r.non2xx}`, f0(r.cpu.jose), f2(r.rps / res['j-noop'].rps), f0(r.cpu.host), `${f2(res[ours].rps / r.rps)}×`, `${f2(res[ours].cpu.edgeward / r.cpu.jose)}×`]);
  }

  console.log('\n### 3. the forward path: GET /api/v1/bench to a local origin (node http, small JSON)\n');
  row(['path', 'requests/s', 'p50 ms', 'p99 ms', 'non-2xx / socket errors', 'Worker\'s workerd CPU µs/request', 'origin CPU µs/request', 'ratio to direct']);
  row(['---', '---:', '---:', '---:', '---:', '---:', '---:', '---:']);
  for (const id of ['o-direct', 'e-api', 'j-api']) {
    const r = res[id];
    const cpu = { 'o-direct': NaN, 'e-api': r.cpu.edgeward, 'j-api': r.cpu.jose }[id];
    row([r.name, f0(r.rps), f2(r.p50), f2(r.p99), `${r.non2xx} / ${r.errors - r.non2xx}`, f0(cpu), f0(r.cpu.origin), f2(r.rps / res['o-direct'].rps)]);
  }
  console.log(
    `\nedgeward ÷ jose on the forward path: ${f2(res['e-api'].cpu.edgeward / res['j-api'].cpu.jose)}× the workerd CPU per request, ` +
      `${f2(res['e-api'].rps / res['j-api'].rps)}× the requests/s.`,
  );

  console.log('\n### 4. bundle size and CPU time per request (workerd process, median over rounds)\n');
  row(['Worker', 'bundle (wrangler Total Upload)', 'gzip', 'CPU µs/request, no-op', 'CPU µs/request, whoami', 'whoami − no-op', 'CPU µs/request, /api forward']);
  row(['---', '---:', '---:', '---:', '---:', '---:', '---:']);
  const e = (id) => res[id].cpu.edgeward;
  const j = (id) => res[id].cpu.jose;
  row(['edgeward (Rust/WebAssembly)', edgewardBundle.total, edgewardBundle.gzip, f0(e('e-noop')), f0(e('e-who')), f0(e('e-who') - e('e-noop')), f0(e('e-api'))]);
  row(['jose Worker (JavaScript)', joseBundle.total, joseBundle.gzip, f0(j('j-noop')), f0(j('j-who')), f0(j('j-who') - j('j-noop')), f0(j('j-api'))]);
  row(['workers-oauth-provider Worker (JavaScript)', providerBundle.total, providerBundle.gzip, '—', '—', '—', '—']);
  const anyErrors = ['e-who', 'j-who', 'e-api', 'j-api', 'e-token'].some((id) => res[id].errors > 0);
  if (anyErrors) {
    console.log(
      '\nnon-2xx answers under load: if they are 429s, raise the partner\'s limits (BENCH_LIMITS and putPartner in scripts/bench.mjs).',
    );
  }
  console.log(`\n(load phase: ${measuredS.toFixed(0)} s)`);

  const fresh = await flows(w, web, FLOWS, { returning: false });
  const back = await flows(w, web, FLOWS, { returning: true });
  console.log(`\nper-flow times, ${FLOWS} sequential flows each (client-side time, loopback):\n`);
  console.log('| flow | mean ms | p50 ms | max ms |');
  console.log('|---|---:|---:|---:|');
  const { linking, auto } = await linkFlows(w, FLOWS);
  const mean = (t) => t.reduce((a, b) => a + b, 0) / t.length;
  for (const [name, t] of [
    ['new session: authorize, login (Argon2id), consent, token', fresh],
    ['returning user: authorize (session + consent remembered), token', back],
    ['account linking: link request, login (Argon2id), consent, link token', linking],
    ['automatic login: assertion verified, link found, session started', auto],
  ]) {
    console.log(`| ${name} | ${mean(t).toFixed(1)} | ${percentile(t, 50).toFixed(1)} | ${Math.max(...t).toFixed(1)} |`);
  }

  const peers = await peerFlows(w, web, provider, FLOWS);
  console.log(
    `\n### 5. the code flow against workers-oauth-provider ${PROVIDER_VERSION} (benches/oauth-provider-worker)\n\n` +
      `${FLOWS} returning-user flows per row, the rows' flows in turn: authorize (signed in, consent remembered) → 302 with ` +
      `a code → token exchange (code, PKCE verifier, client_secret_basic); client-side time, loopback. edgeward: session ` +
      `and remembered consent checked, the grant and its code in a Durable Object, an EdDSA JWT access token, a refresh ` +
      `token, and with openid an RS256 ID token. The provider (its defaults): client and grant in KV, the user's earlier ` +
      `grant for the client revoked, opaque access and refresh tokens stored by hash, no ID token.\n`,
  );
  console.log('| flow | mean ms | p50 ms | max ms | edgeward ÷ provider (mean / p50; aim ≤ 1.00) |');
  console.log('|---|---:|---:|---:|---:|');
  const ratio = (t) => `${f2(mean(t) / mean(peers.theirs))}× / ${f2(percentile(t, 50) / percentile(peers.theirs, 50))}×`;
  for (const [name, t, r] of [
    ['edgeward, scope openid profile (ID token too)', peers.ours, ratio(peers.ours)],
    ['edgeward, scope profile (no ID token)', peers.oursOAuth, ratio(peers.oursOAuth)],
    ['workers-oauth-provider, scope openid profile (no ID token)', peers.theirs, '—'],
  ]) {
    console.log(`| ${name} | ${mean(t).toFixed(1)} | ${percentile(t, 50).toFixed(1)} | ${Math.max(...t).toFixed(1)} | ${r} |`);
  }

  await provider.stop();
  provider = undefined;
  const coldStart = performance.now();
  const stubDir = writeEdgewardStub(path.join(tmp, 'edgeward-stub'));
  // One key set for every sample: startWorker would otherwise generate RSA keys (hundreds of ms,
  // in this process) inside each start.
  const signingKeys = initialKeySet();
  const targets = [
    { id: 'noop', name: 'JS no-op Worker (baseline of the peers)', start: () => plainMiniflare(noopOptions()) },
    { id: 'jose', name: 'jose Worker', base: 'noop', start: () => plainMiniflare(joseOptions(joseBundle.dir)) },
    { id: 'provider', name: 'workers-oauth-provider Worker', base: 'noop', start: () => plainMiniflare(providerOptions(providerBundle.dir)) },
    { id: 'stub', name: "JS stub with edgeward's bindings (baseline of edgeward)", start: () => startWorker({ build: stubDir, keepLogs: false, signingKeys }) },
    { id: 'edgeward', name: 'edgeward (Rust/WebAssembly)', base: 'stub', start: () => startWorker({ build: edgewardBundle.dir, keepLogs: false, signingKeys }) },
  ];
  const cold = await coldStarts(targets);
  console.log(
    `\n### 6. cold start: a new workerd process per sample (${COLD_SAMPLES} samples each, in turn), the dry-run bundle, GET /healthz\n\n` +
      `workerd compiles a Worker's modules (edgeward's WebAssembly too) and runs their top level (edgeward's instantiates ` +
      `the WebAssembly module) before it listens, so that is in "start → ready"; "first − warm" is what the first request ` +
      `pays on top (code compiled on first use, one-time setup). "− baseline": the row's median minus its baseline's. Wall times in ms, ` +
      `median / max; CPU ms (10 ms ticks), medians.\n`,
  );
  row(['Worker', 'start → ready', 'first /healthz', 'warm /healthz', 'first − warm', 'start → first answer', '− baseline', 'workerd CPU to first answer', '− baseline', 'Miniflare (node) CPU to ready']);
  row(['---', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:']);
  const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : '—');
  const mm = (xs) => `${f1(median(xs))} / ${f1(Math.max(...xs))}`;
  for (const t of targets) {
    const xs = cold[t.id];
    const pick = (id, k) => cold[id].map((x) => x[k]);
    const minusBase = (k, f) => (t.base ? f(median(pick(t.id, k)) - median(pick(t.base, k))) : '—');
    row([
      t.name, mm(pick(t.id, 'ready')), mm(pick(t.id, 'first')), f1(median(pick(t.id, 'warm'))), f1(median(xs.map((x) => x.first - x.warm))),
      mm(pick(t.id, 'startToFirst')), minusBase('startToFirst', f1), f0(median(pick(t.id, 'cpu'))), minusBase('cpu', f0), f0(median(pick(t.id, 'nodeCpu'))),
    ]);
  }
  console.log(`\n(cold starts: ${((performance.now() - coldStart) / 1000).toFixed(0)} s)`);

  // Issue 15's aims, from this run. Its absolute aims (forward path 200 µs, token endpoint 250 µs)
  // were set on a run whose jose no-op cost 106 µs; machines differ, so they are also given here
  // in units of this run's jose no-op (200/106 and 250/106 of it).
  const JOSE_NOOP_OF_THE_ISSUE = 106;
  const unit = j('j-noop') / JOSE_NOOP_OF_THE_ISSUE;
  const kib = (x) => Number(String(x).replace(/[^\d.]/g, ''));
  const aims = [
    ['no-op, workerd CPU', `${f0(e('e-noop'))} µs = ${f2(e('e-noop') / j('j-noop'))}× jose's no-op`, '≤ 1.20× jose\'s no-op', e('e-noop') / j('j-noop') <= 1.2],
    ['GET /edge/whoami, requests/s', `${f2(res['e-who'].rps / res['j-who'].rps)}× jose's (workerd CPU ${f2(e('e-who') / j('j-who'))}×)`, '≥ 1.00× jose\'s', res['e-who'].rps / res['j-who'].rps >= 1],
    ['forward path, workerd CPU', `${f0(e('e-api'))} µs (jose Worker, same job: ${f0(j('j-api'))} µs)`, `≤ 200 µs on the issue's machine = ${f0(200 * unit)} µs here`, e('e-api') <= 200 * unit],
    ['token endpoint, workerd CPU', `${f0(e('e-token'))} µs`, `≤ 250 µs on the issue's machine = ${f0(250 * unit)} µs here`, e('e-token') <= 250 * unit],
    ['bundle, gzip', `${edgewardBundle.gzip}`, '< 350 KiB', kib(edgewardBundle.gzip) < 350],
    ['returning user\'s code flow', `${f2(mean(peers.ours) / mean(peers.theirs))}× (mean) / ${f2(percentile(peers.ours, 50) / percentile(peers.theirs, 50))}× (p50) the provider's`, '≤ 1.00× workers-oauth-provider', percentile(peers.ours, 50) / percentile(peers.theirs, 50) <= 1],
  ];
  console.log('\n### 7. issue 15\'s aims, from this run\n');
  row(['figure', 'measured', 'aim', 'met']);
  row(['---', '---', '---', '---']);
  for (const [name, got, aim, met] of aims) row([name, got, aim, met ? 'yes' : 'no']);
} finally {
  await w?.stop();
  await jose?.stop();
  await provider?.stop();
  origin.stop();
  rmSync(tmp, { recursive: true, force: true });
}
