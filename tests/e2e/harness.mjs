// The end-to-end harness: serves the built Worker in local workerd (Miniflare) with fresh,
// in-memory KV and Durable Objects, configured from wrangler.toml, on a free loopback port.
import { existsSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { Miniflare } from 'miniflare';
import { unstable_getMiniflareWorkerOptions, unstable_readConfig } from 'wrangler';
import { initialKeySet } from '../../scripts/lib/jwk.mjs';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The built Worker: build/ (scripts/build.sh), build-counts/ (scripts/build.sh --io-counts), or
 * any directory with an index.js (an absolute path: the bench's `wrangler deploy --dry-run` bundle). */
const buildOf = (dir) => path.resolve(ROOT, dir, 'index.js');

// A KV binding whose every call fails: storage faults must close the gate, never open it.
const FAILING_KV = `
export default function () {
  const fail = async () => { throw new Error('injected KV failure'); };
  return { get: fail, put: fail, delete: fail, list: fail, getWithMetadata: fail };
}`;
const HANGING_KV = `
export default function () {
  const hang = () => new Promise(() => {});
  return { get: hang, put: hang, delete: hang, list: hang, getWithMetadata: hang };
}`;

// A KV binding that forwards to a real namespace and logs every put (its key only), so a test
// can count the writes per key: KV takes one write a second per key.
const KV_PUT_LOG = 'edgeward-test-kv-put ';
const COUNTING_KV = `
export default function (env) {
  const kv = env.INNER;
  return {
    get: (...a) => kv.get(...a),
    getWithMetadata: (...a) => kv.getWithMetadata(...a),
    list: (...a) => kv.list(...a),
    delete: (...a) => kv.delete(...a),
    put: (key, ...rest) => {
      console.log(${JSON.stringify(KV_PUT_LOG)} + JSON.stringify(String(key)));
      return kv.put(key, ...rest);
    },
  };
}`;

/**
 * Starts the Worker. Options:
 *  - adminToken: the ADMIN_TOKEN secret (null: unset); a fresh random one by default
 *  - vars: extra or overriding vars
 *  - failingKv: replace the PARTNERS namespace with one that always fails ('hang': never answers)
 *  - countKv: count the writes to the PARTNERS namespace, per key: `worker.kvPuts()` answers
 *    { key: number of puts } (the counts come from the Worker's output, so logs are kept)
 *  - keepLogs: collect the Worker's output lines (default true; benchmarks turn it off)
 *  - signingKeys: the SIGNING_KEYS secret (a JWK Set object; null: unset); fresh keys by default
 *  - build: the build directory ('build'; 'build-counts' for the storage-call counters; an
 *    absolute path for a bundle elsewhere)
 */
export async function startWorker({
  adminToken,
  vars = {},
  failingKv = false,
  countKv = false,
  keepLogs = true,
  signingKeys = initialKeySet(),
  build = 'build',
  inspectorPort,
} = {}) {
  const BUILD = buildOf(build);
  if (!existsSync(BUILD)) {
    throw new Error(`the built Worker is missing (${BUILD}): run scripts/build.sh (scripts/test.sh does it first)`);
  }
  const token = adminToken === undefined ? randomBytes(24).toString('hex') : adminToken;
  const configPath = path.join(ROOT, 'wrangler.toml');
  const { workerOptions } = unstable_getMiniflareWorkerOptions(configPath);
  // Only the vars of wrangler.toml: a developer's .dev.vars secrets must not leak into tests.
  // The issuer must be the URL the Worker is reached at, so the port is chosen first.
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  // Tests create users without naming a region unless they test regions: they are made in the
  // EU, so every test goes through a jurisdiction's namespace (its local stand-in, which only a
  // loopback issuer gets: local workerd has no jurisdictions). A Worker given an https issuer
  // puts them in the UK instead, which needs no jurisdiction.
  const loopback = vars.ISSUER === undefined || /^http:\/\/(127\.0\.0\.1|localhost):/.test(vars.ISSUER);
  const bindings = {
    ...unstable_readConfig({ config: configPath }).vars,
    ISSUER: url,
    DEFAULT_USER_REGION: loopback ? 'eu' : 'uk',
    ...vars,
  };
  if (token !== null) bindings.ADMIN_TOKEN = token;
  if (signingKeys !== null) bindings.SIGNING_KEYS = JSON.stringify(signingKeys);
  const logs = [];
  const main = {
    name: 'edgeward',
    modules: true,
    scriptPath: BUILD,
    modulesRoot: path.dirname(BUILD),
    modulesRules: workerOptions.modulesRules,
    compatibilityDate: workerOptions.compatibilityDate,
    compatibilityFlags: workerOptions.compatibilityFlags,
    bindings,
    kvNamespaces: workerOptions.kvNamespaces,
    durableObjects: workerOptions.durableObjects,
    queueProducers: workerOptions.queueProducers,
    queueConsumers: workerOptions.queueConsumers,
    d1Databases: workerOptions.d1Databases,
    r2Buckets: workerOptions.r2Buckets,
  };
  const workers = [main];
  if (failingKv) {
    delete main.kvNamespaces.PARTNERS;
    main.wrappedBindings = { PARTNERS: { scriptName: 'failing-kv' } };
    workers.push({ name: 'failing-kv', modules: true, script: failingKv === 'hang' ? HANGING_KV : FAILING_KV });
  } else if (countKv) {
    const inner = main.kvNamespaces.PARTNERS;
    delete main.kvNamespaces.PARTNERS;
    main.wrappedBindings = { PARTNERS: { scriptName: 'counting-kv' } };
    workers.push({ name: 'counting-kv', modules: true, script: COUNTING_KV, kvNamespaces: { INNER: inner } });
  }
  const mf = new Miniflare({
    workers,
    host: '127.0.0.1',
    port,
    // scripts/profile.mjs: V8's inspector, for CPU profiles of the Worker under load.
    ...(inspectorPort ? { inspectorPort } : {}),
    handleRuntimeStdio(stdout, stderr) {
      for (const stream of [stdout, stderr]) {
        // Output nobody reads (the benchmarks) is drained undecoded: the load generator and this
        // process share the machine with workerd, and splitting lines is not the Worker's cost.
        if (!keepLogs && !countKv) {
          stream.resume();
          continue;
        }
        let buf = '';
        stream.on('data', (chunk) => {
          buf += chunk;
          let i;
          while ((i = buf.indexOf('\n')) >= 0) {
            logs.push(buf.slice(0, i));
            buf = buf.slice(i + 1);
          }
        });
      }
    },
  });
  await mf.ready;
  const worker = {
    url,
    signingKeys,
    adminToken: token,
    logs,
    /** Request-log lines the Worker wrote, parsed. */
    requestLogs: () => logs.filter((l) => l.trim().startsWith('{"ts"')).map((l) => JSON.parse(l.trim())),
    fetch: (p, init = {}) => fetchRetryingIdempotent(url + p, { redirect: 'manual', ...init }),
    admin: (p, { method = 'GET', body, token: t = token, headers = {} } = {}) =>
      fetchRetryingIdempotent(url + '/admin' + p, {
        method,
        headers: {
          ...(t ? { authorization: `Bearer ${t}` } : {}),
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
          ...headers,
        },
        body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
      }),
    /** With countKv: the number of writes to each PARTNERS key so far. */
    kvPuts: () => {
      const counts = {};
      for (const l of logs) {
        const at = l.indexOf(KV_PUT_LOG);
        if (at < 0) continue;
        const key = JSON.parse(l.slice(at + KV_PUT_LOG.length).trim());
        counts[key] = (counts[key] ?? 0) + 1;
      }
      return counts;
    },
    /** The Durable Object namespace of a binding, for tests that talk to an object directly. */
    objects: (binding) => mf.getDurableObjectNamespace(binding),
    /**
     * A KV namespace of the Worker as the test's own client: for tests that change what another
     * isolate or another colo would have written, without the Worker's own isolate knowing.
     */
    kv: (binding) => mf.getKVNamespace(binding), // a promise of the namespace
    /** A binding of the Worker as the test's own client: an R2 bucket or a queue producer. */
    r2Bucket: (binding) => mf.getR2Bucket(binding),
    queueProducer: (binding) => mf.getQueueProducer(binding),
    /**
     * Sends one command straight to a Durable Object of `binding` named `name` in the global
     * namespace, as the Worker does (`{"<command>": {...}}`), and answers its parsed reply
     * (`{Ok: ...}` or `{Err: ...}`). For tests that set up data of an earlier release (a user
     * from before regions) or look at where data is stored.
     */
    objectCommand: async (binding, name, command) => {
      const ns = await mf.getDurableObjectNamespace(binding);
      const res = await ns.get(ns.idFromName(name)).fetch('https://object.internal/command', {
        method: 'POST',
        body: JSON.stringify(command),
      });
      return JSON.parse(await res.text());
    },
    stop: () => mf.dispose(),
  };
  return worker;
}

/**
 * fetch(), retried once when a GET or HEAD fails before any answer: a pooled keep-alive
 * connection the server closed while the test was blocked (spawnSync of the CLI) fails that way.
 * Never retried for other methods, and never when an answer arrived.
 */
export async function fetchRetryingIdempotent(url, init) {
  try {
    return await fetch(url, init);
  } catch (e) {
    const method = (init.method ?? 'GET').toUpperCase();
    if (!(e instanceof TypeError) || !['GET', 'HEAD'].includes(method)) throw e;
    return fetch(url, init);
  }
}

/** Adds a partner through the admin API and checks it was stored. */
export async function addPartner(worker, id, origins, status = 'active', name = `Partner ${id}`) {
  const res = await worker.admin(`/partners/${id}`, { method: 'PUT', body: { name, origins, status } });
  if (res.status !== 201 && res.status !== 200) {
    throw new Error(`adding partner ${id} failed: ${res.status} ${await res.text()}`);
  }
  return res.json();
}

/**
 * A local stand-in for the platform's origin server: records every request it receives (method,
 * url, headers, body length and SHA-256) so tests can assert what did, and did not, reach it.
 * `respond(req, res, record)` may answer instead of the default 200 JSON echo.
 */
export async function startOrigin({ respond } = {}) {
  const received = [];
  const server = http.createServer((req, res) => {
    const hash = createHash('sha256');
    let length = 0;
    req.on('data', (c) => {
      hash.update(c);
      length += c.length;
    });
    req.on('end', () => {
      const record = { method: req.method, url: req.url, headers: req.headers, bodyLength: length, bodySha256: hash.digest('hex') };
      received.push(record);
      if (respond) return respond(req, res, record);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ origin: 'ok', method: req.method, url: req.url, bodyLength: length }));
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    stop: () => new Promise((resolve) => { server.closeAllConnections?.(); server.close(resolve); }),
  };
}

/** The request-log line of a response (matched by its x-request-id), once the Worker wrote it. */
export async function logOf(worker, res) {
  const id = res.headers.get('x-request-id');
  for (let i = 0; i < 100; i++) {
    const line = worker.requestLogs().find((l) => l.request_id === id);
    if (line) return line;
    await sleep(20);
  }
  throw new Error(`no log line for request ${id}`);
}

/** A free loopback TCP port (free when asked: the caller binds it soon after). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
