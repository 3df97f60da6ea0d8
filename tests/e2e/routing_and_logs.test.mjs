// Routing basics, and the one JSON log line per request that never carries a secret.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker, addPartner, startOrigin, sleep } from './harness.mjs';

let w;
before(async () => {
  w = await startWorker();
});
after(() => w?.stop());

test('health_is_the_no_op_route', async () => {
  const res = await w.fetch('/healthz');
  assert.equal(res.status, 200);
  assert.equal(await res.text(), 'ok');
  assert.match(res.headers.get('x-request-id'), /^[0-9a-f]{16}$/);
});

test('unknown_route_is_404_json', async () => {
  const res = await w.fetch('/nowhere');
  assert.equal(res.status, 404);
  assert.equal((await res.json()).error, 'not_found');
});

test('unsupported_method_is_405_with_allow', async () => {
  const res = await w.fetch('/healthz', { method: 'POST' });
  assert.equal(res.status, 405);
  assert.equal(res.headers.get('allow'), 'GET, HEAD');
});

async function logFor(requestId) {
  for (let i = 0; i < 50; i++) {
    const line = w.requestLogs().find((l) => l.request_id === requestId);
    if (line) return line;
    await sleep(20);
  }
  throw new Error(`no log line for ${requestId}`);
}

test('log_line_per_request_has_the_documented_fields', async () => {
  await addPartner(w, 'logged', ['https://logged.example']);
  const res = await w.fetch('/api/v1/x', { headers: { origin: 'https://logged.example' } });
  const line = await logFor(res.headers.get('x-request-id'));
  assert.deepEqual(Object.keys(line).sort(), [
    'duration_ms', 'method', 'outcome', 'partner', 'request_id', 'route', 'status', 'ts',
  ]);
  assert.equal(line.method, 'GET');
  assert.equal(line.route, '/api/*');
  assert.equal(line.status, 401, 'admitted by the gate, refused for want of a token');
  assert.equal(line.outcome, 'unauthorized');
  assert.equal(line.partner, 'logged');
  const ids = w.requestLogs().map((l) => l.request_id);
  assert.equal(ids.filter((id) => id === line.request_id).length, 1, 'exactly one line');
});

test('log_never_contains_tokens_query_strings_or_paths', async () => {
  const secretQuery = 'code=SECRETCODE123&access_token=SECRETQUERYTOKEN';
  const bearer = 'SECRETBEARERTOKEN456';
  const ids = [];
  for (const [p, init] of [
    [`/api/v1/pupils/alice-smith?${secretQuery}`, { headers: { origin: 'https://logged.example', authorization: `Bearer ${bearer}` } }],
    [`/admin/partners?${secretQuery}`, { headers: { authorization: `Bearer ${bearer}` } }],
    ['/admin/partners', { headers: { authorization: `Bearer ${w.adminToken}` } }],
    [`/nowhere/alice-smith?${secretQuery}`, {}],
  ]) {
    const res = await w.fetch(p, init);
    ids.push(res.headers.get('x-request-id'));
  }
  for (const id of ids) await logFor(id);
  const all = w.logs.join('\n');
  for (const secret of ['SECRETCODE123', 'SECRETQUERYTOKEN', bearer, w.adminToken, 'alice-smith', '?']) {
    assert.ok(!all.includes(secret), `log leaks ${secret}`);
  }
});

test('origin_stand_in_records_what_reaches_it', async () => {
  const origin = await startOrigin();
  try {
    const res = await fetch(`${origin.url}/v1/echo?x=1`, { method: 'POST', body: 'abc' });
    assert.equal(res.status, 200);
    assert.deepEqual(origin.received.map((r) => [r.method, r.url, r.bodyLength]), [['POST', '/v1/echo?x=1', 3]]);
  } finally {
    await origin.stop();
  }
});

test('unknown_http_methods_are_405_never_read_as_get', async () => {
  for (const [path, method, allow] of [
    ['/admin/partners', 'PROPFIND', 'GET'],
    ['/api/v1/x', 'MKCOL', 'GET, HEAD, POST, PUT, PATCH, DELETE'],
    ['/healthz', 'LOCK', 'GET, HEAD'],
  ]) {
    const res = await w.fetch(path, { method, headers: { authorization: `Bearer ${w.adminToken}` } });
    assert.equal(res.status, 405, `${method} ${path}`);
    assert.equal(res.headers.get('allow'), allow, `${method} ${path}`);
    const line = await logFor(res.headers.get('x-request-id'));
    assert.equal(line.method, 'OTHER', 'logged as what it is, not as GET');
  }
});
