// The partner gate on partner-facing routes (/api/* and CORS preflights): only an active
// partner's exact origin gets in, and every trick to look like one is refused.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { domainToASCII } from 'node:url';
import { startWorker, addPartner, logOf, sleep } from './harness.mjs';

const ACME = 'https://app.acme.example';
const TTL_S = 1;
let w;

before(async () => {
  w = await startWorker({ vars: { GATE_CACHE_TTL_SECONDS: String(TTL_S) } });
  await addPartner(w, 'acme', [ACME, 'https://app.acme.example:8443', 'http://localhost:3000']);
  await addPartner(w, 'sleepy', ['https://sleepy.example'], 'suspended');
  await addPartner(w, 'buecher', ['https://xn--bcher-kva.example']);
});
after(() => w?.stop());

const api = (headers, path = '/api/v1/classes') => w.fetch(path, { headers });

// Passing the gate means meeting the next check: these requests carry no token, so an admitted
// origin gets 401 (readable by the page: CORS headers), a refused one 403 without them.
async function assertAdmitted(res, origin, partner, message) {
  assert.equal(res.status, 401, message);
  assert.equal((await res.json()).error, 'unauthorized', message);
  assert.equal(res.headers.get('access-control-allow-origin'), origin, message);
  if (partner) assert.equal((await logOf(w, res)).partner, partner, message);
}

async function assertDenied(res, error, message) {
  assert.equal(res.status, 403, message);
  assert.equal(res.headers.get('access-control-allow-origin'), null, `${message}: no CORS header`);
  assert.equal(res.headers.get('access-control-allow-methods'), null, `${message}: no CORS header`);
  const body = await res.json();
  assert.equal(body.error, error, message);
  assert.equal(body.partner_id, undefined, message);
}

test('api_registered_origin_is_admitted_with_exact_cors_headers', async () => {
  const res = await api({ origin: ACME });
  assert.equal(res.headers.get('vary'), 'Origin');
  await assertAdmitted(res, ACME, 'acme');
});

test('api_registered_port_and_loopback_origins_are_admitted', async () => {
  for (const origin of ['https://app.acme.example:8443', 'http://localhost:3000']) {
    await assertAdmitted(await api({ origin }), origin, 'acme', origin);
  }
});

test('api_international_origin_matches_its_punycode_form_only', async () => {
  await assertAdmitted(await api({ origin: 'https://xn--bcher-kva.example' }), 'https://xn--bcher-kva.example', 'buecher');
  await assertDenied(await api({ origin: 'https://bucher.example' }), 'origin_not_allowed', 'ascii look-alike');
});

test('api_suffix_and_prefix_tricks_are_denied', async () => {
  for (const origin of [
    'https://app.acme.example.evil.test',
    'https://evilapp.acme.example',
    'https://xapp.acme.example',
    'https://evil.test/app.acme.example',
    'https://acme.example',
    'https://app.acme.example.evil',
    'https://app.acme.examplex',
  ]) {
    await assertDenied(await api({ origin }), 'origin_not_allowed', origin);
  }
});

test('api_scheme_and_port_changes_are_denied', async () => {
  for (const origin of [
    'http://app.acme.example',
    'https://app.acme.example:444',
    'https://app.acme.example:443',
    'wss://app.acme.example',
    'http://localhost:3001',
    'https://localhost:3000',
  ]) {
    await assertDenied(await api({ origin }), 'origin_not_allowed', origin);
  }
});

test('api_origin_null_is_denied', async () => {
  await assertDenied(await api({ origin: 'null' }), 'origin_not_allowed', 'null');
});

test('api_non_canonical_spellings_are_denied', async () => {
  for (const origin of [
    'HTTPS://APP.ACME.EXAMPLE',
    'https://APP.acme.example',
    'https://app.acme.example/',
    'https://app.acme.example.',
    'https://user@app.acme.example',
    'https://user:pw@app.acme.example',
    'https://app.acme.example/path',
    'https://app.acme.example?x',
    'https://app.acme.example#x',
    'https://*.acme.example',
    `${ACME}, https://evil.test`,
  ]) {
    await assertDenied(await api({ origin }), 'origin_not_allowed', origin);
  }
});

test('api_unicode_look_alike_is_denied', async () => {
  // Cyrillic "а" (U+0430) in place of the Latin "a": a different name once in punycode.
  const spoof = `https://${domainToASCII('\u0430pp.acme.example')}`;
  assert.notEqual(spoof, ACME);
  await assertDenied(await api({ origin: spoof }), 'origin_not_allowed', spoof);
  // Latin-1 bytes in the header are not a canonical origin either.
  await assertDenied(await api({ origin: 'https://\u00e4pp.acme.example' }), 'origin_not_allowed', 'latin1');
});

test('api_oversized_origin_and_referer_are_denied', async () => {
  await assertDenied(await api({ origin: `https://${'a'.repeat(8000)}.example` }), 'origin_not_allowed', 'origin');
  await assertDenied(
    await api({ referer: `${ACME}/${'p'.repeat(9000)}` }),
    'origin_not_allowed',
    'referer',
  );
});

test('api_referer_counts_only_when_origin_is_absent', async () => {
  await assertAdmitted(await api({ referer: `${ACME}/lessons/7?tab=2` }), ACME, 'acme');
  // A present Origin decides, even when a Referer would have been allowed.
  await assertDenied(await api({ origin: 'https://evil.test', referer: `${ACME}/` }), 'origin_not_allowed', 'both');
  await assertDenied(await api({ origin: 'null', referer: `${ACME}/` }), 'origin_not_allowed', 'null+referer');
  await assertDenied(await api({ referer: 'https://user:pw@app.acme.example/' }), 'origin_not_allowed', 'userinfo');
  await assertDenied(await api({ referer: 'https://app.acme.example.evil.test/' }), 'origin_not_allowed', 'suffix');
});

test('api_server_to_server_request_skips_the_gate_but_needs_a_token', async () => {
  const res = await api({});
  assert.equal(res.status, 401);
  assert.equal((await res.json()).error, 'unauthorized');
  assert.equal(res.headers.get('access-control-allow-origin'), null);
});

test('api_suspended_partner_is_denied', async () => {
  await assertDenied(await api({ origin: 'https://sleepy.example' }), 'partner_suspended', 'suspended');
});

async function untilStatus(req, status, deadlineMs) {
  const start = Date.now();
  for (;;) {
    const res = await req();
    if (res.status === status || Date.now() - start > deadlineMs) return { res, waited: Date.now() - start };
    await res.arrayBuffer();
    await sleep(100);
  }
}

test('api_partner_suspended_later_is_denied_within_the_cache_lifetime', async () => {
  const origin = 'https://later.example';
  await addPartner(w, 'later', [origin]);
  await assertAdmitted(await api({ origin }), origin, 'later'); // now cached as allowed
  await addPartner(w, 'later', [origin], 'suspended');
  const { res } = await untilStatus(() => api({ origin }), 403, TTL_S * 1000 + 1500);
  await assertDenied(res, 'partner_suspended', 'after suspension');
});

test('api_partner_deleted_later_is_denied_within_the_cache_lifetime', async () => {
  const origin = 'https://gone.example';
  await addPartner(w, 'gone', [origin]);
  await assertAdmitted(await api({ origin }), origin, 'gone');
  const del = await w.admin('/partners/gone', { method: 'DELETE' });
  assert.equal(del.status, 204);
  const { res } = await untilStatus(() => api({ origin }), 403, TTL_S * 1000 + 1500);
  await assertDenied(res, 'origin_not_allowed', 'after deletion');
});

test('api_origin_removed_from_partner_is_denied_and_new_origin_admitted', async () => {
  await addPartner(w, 'mover', ['https://old.mover.example']);
  await assertAdmitted(await api({ origin: 'https://old.mover.example' }), 'https://old.mover.example', 'mover');
  await addPartner(w, 'mover', ['https://new.mover.example']);
  const { res } = await untilStatus(() => api({ origin: 'https://old.mover.example' }), 403, TTL_S * 1000 + 1500);
  await assertDenied(res, 'origin_not_allowed', 'released origin');
  await assertAdmitted(await api({ origin: 'https://new.mover.example' }), 'https://new.mover.example', 'mover');
});

const preflight = (origin, method = 'PUT', path = '/api/v1/classes', extra = {}) =>
  w.fetch(path, {
    method: 'OPTIONS',
    headers: {
      origin,
      'access-control-request-method': method,
      'access-control-request-headers': 'authorization, content-type',
      ...extra,
    },
  });

test('preflight_from_partner_origin_is_answered_at_the_edge', async () => {
  const res = await preflight(ACME);
  assert.equal(res.status, 204);
  assert.equal(res.headers.get('access-control-allow-origin'), ACME);
  assert.deepEqual(
    res.headers.get('access-control-allow-methods').split(', ').sort(),
    ['DELETE', 'GET', 'HEAD', 'PATCH', 'POST', 'PUT'],
  );
  assert.equal(res.headers.get('access-control-allow-headers'), 'authorization, content-type');
  assert.equal(res.headers.get('access-control-max-age'), '600');
  assert.match(res.headers.get('vary'), /Origin/);
  assert.equal(res.headers.get('access-control-allow-credentials'), null);
});

test('preflight_from_unknown_or_suspended_origin_is_denied', async () => {
  await assertDenied(await preflight('https://evil.test'), 'origin_not_allowed', 'unknown');
  await assertDenied(await preflight('null'), 'origin_not_allowed', 'null');
  await assertDenied(await preflight('https://sleepy.example'), 'partner_suspended', 'suspended');
});

test('preflight_for_a_method_the_api_does_not_take_is_refused', async () => {
  const res = await preflight(ACME, 'TRACE');
  assert.equal(res.status, 405);
  assert.equal(res.headers.get('access-control-allow-origin'), null);
  assert.equal((await res.json()).error, 'method_not_allowed');
});

test('preflight_to_a_route_without_cors_is_405_whatever_the_origin', async () => {
  // OPTIONS is not a method of the admin API: the answer must not reveal whether the origin is
  // a partner's (the gate is not consulted), and carries no CORS headers.
  for (const origin of [ACME, 'https://evil.test']) {
    const res = await preflight(origin, 'GET', '/admin/partners');
    assert.equal(res.status, 405, origin);
    assert.equal(res.headers.get('allow'), 'GET', origin);
    assert.equal(res.headers.get('access-control-allow-origin'), null, origin);
    assert.equal((await res.json()).error, 'method_not_allowed', origin);
  }
  const unknown = await preflight(ACME, 'GET', '/nowhere');
  assert.equal(unknown.status, 404);
  assert.equal(unknown.headers.get('access-control-allow-origin'), null);
});

test('preflight_offers_only_the_methods_of_its_route', async () => {
  const res = await preflight(ACME, 'GET', '/edge/whoami');
  assert.equal(res.status, 204);
  assert.equal(res.headers.get('access-control-allow-methods'), 'GET, HEAD');
  assert.equal((await preflight(ACME, 'POST', '/edge/whoami')).status, 405);
});

test('gate_fails_closed_within_the_time_out_when_kv_never_answers', async () => {
  const stuck = await startWorker({ failingKv: 'hang' });
  try {
    const started = Date.now();
    const res = await stuck.fetch('/api/x', { headers: { origin: ACME } });
    const waited = Date.now() - started;
    assert.equal(res.status, 503);
    assert.equal(res.headers.get('access-control-allow-origin'), null);
    assert.equal((await res.json()).error, 'temporarily_unavailable');
    assert.ok(waited >= 4500 && waited < 15_000, `answered after ${waited} ms (time-out 5 s)`);
    const line = stuck.requestLogs().find((l) => l.route === '/api/*');
    assert.match(line.cause, /kv get: no answer within 5 s/);
  } finally {
    await stuck.stop();
  }
});

test('gate_fails_closed_when_kv_fails', async () => {
  const broken = await startWorker({ failingKv: true });
  try {
    for (const res of [await broken.fetch('/api/x', { headers: { origin: ACME } }), await broken.fetch('/api/x', {
      method: 'OPTIONS',
      headers: { origin: ACME, 'access-control-request-method': 'GET' },
    })]) {
      assert.equal(res.status, 503);
      assert.equal(res.headers.get('access-control-allow-origin'), null);
      const body = await res.json();
      assert.equal(body.error, 'temporarily_unavailable');
      assert.doesNotMatch(JSON.stringify(body), /injected/, 'internal cause is not sent');
    }
    const line = broken.requestLogs().find((l) => l.route === '/api/*');
    assert.match(line.cause, /kv get/, 'the cause is logged');
  } finally {
    await broken.stop();
  }
});
