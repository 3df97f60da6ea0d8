// Security events are recorded in the audit trail and paged through the admin API; they carry no
// secrets. Events are written after the response (waitUntil) to a buffer shard, which hands them
// to the audit queue about a second later; its consumer archives them in R2. So tests poll, each
// with a deadline.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker, addPartner, sleep } from './harness.mjs';
import { CookieJar, formFields } from './oauth.mjs';

let w;
const SECRET_PASSWORD = 'this-is-the-secret-password-42';

before(async () => {
  w = await startWorker();
  await addPartner(w, 'acme', ['https://app.acme.example']);
  await w.admin('/users/rita', { method: 'PUT', body: { password: SECRET_PASSWORD, name: 'Rita' } });
});
after(() => w?.stop());

async function events(query = '') {
  const res = await w.admin(`/audit${query}`);
  assert.equal(res.status, 200);
  return res.json();
}

/** Every page of a query, following `next_cursor` (a page may stop early on its work bound). */
async function allEvents(query = '') {
  const out = [];
  let cursor = null;
  for (let pages = 0; pages < 200; pages++) {
    const sep = query ? '&' : '?';
    const body = await events(cursor ? `${query}${sep}cursor=${encodeURIComponent(cursor)}` : query);
    out.push(...body.events);
    if (body.next_cursor === null) return out;
    cursor = body.next_cursor;
  }
  throw new Error('the cursor never reached the end');
}

const DEADLINE_MS = 30_000;

async function until(pred, what, query = '') {
  const end = Date.now() + DEADLINE_MS;
  while (Date.now() < end) {
    const all = await allEvents(query);
    if (pred(all)) return all;
    await sleep(200);
  }
  throw new Error(`no audit event within ${DEADLINE_MS / 1000} s: ${what}`);
}

test('audit_records_security_events_without_secrets', async () => {
  const jar = new CookieJar(w.url);
  let res = await jar.fetch(`/login?return_to=${encodeURIComponent('/account')}`);
  const fields = formFields(await res.text());
  res = await jar.postForm('/login', { ...fields, username: 'rita', password: 'wrong-password-99' });
  assert.equal(res.status, 401);
  res = await jar.postForm('/login', { ...fields, username: 'rita', password: SECRET_PASSWORD });
  assert.equal(res.status, 303);
  await w.fetch('/api/x', { headers: { origin: 'https://evil.example' } });
  await w.fetch('/link?request=not-a-jwt');

  const all = await until((e) => ['login_failed', 'login', 'origin_denied', 'link_refused', 'admin_change'].every((k) => e.some((x) => x.type === k)), 'kinds');
  const failed = all.find((e) => e.type === 'login_failed');
  assert.equal(failed.route, '/login');
  assert.equal(failed.status, 401);
  const change = all.find((e) => e.type === 'admin_change' && e.partner === 'acme');
  assert.ok(change, 'the partner creation');
  const text = JSON.stringify(all);
  for (const secret of [SECRET_PASSWORD, 'wrong-password-99', w.adminToken, 'rita']) {
    assert.ok(!text.includes(secret), `the audit log leaks ${secret}`);
  }
});

test('audit_query_filters_and_pages', async () => {
  const byType = await allEvents('?type=login_failed');
  assert.ok(byType.length >= 1);
  assert.ok(byType.every((e) => e.type === 'login_failed'));
  const byPartner = await allEvents('?partner=acme');
  assert.ok(byPartner.length >= 1);
  assert.ok(byPartner.every((e) => e.partner === 'acme'));
  const first = await events('?limit=1');
  assert.equal(first.events.length, 1);
  assert.equal(typeof first.next_cursor, 'string', 'the cursor is opaque text');
  const second = await events(`?limit=1&cursor=${encodeURIComponent(first.next_cursor)}`);
  assert.equal(second.events.length, 1);
  assert.notEqual(second.events[0].id, first.events[0].id, 'the next page moves on');
  assert.match(first.events[0].id, /^[0-9a-f]{32}$/, 'an event carries its 128-bit id');
  for (const bad of ['1', first.next_cursor.slice(0, -1), `x${first.next_cursor}`]) {
    const res = await w.admin(`/audit?cursor=${encodeURIComponent(bad)}`);
    assert.equal(res.status, 400, `cursor ${bad}`);
    assert.equal((await res.json()).field, 'cursor');
  }
  const future = await events(`?since=${Math.floor(Date.now() / 1000) + 3600}`);
  assert.deepEqual(future.events, []);
  const bad = await w.admin('/audit?since=yesterday');
  assert.equal(bad.status, 400);
  assert.equal((await bad.json()).field, 'since');
  const anon = await w.admin('/audit', { token: null });
  assert.equal(anon.status, 401);
});

test('audit_throttles_floods_of_denied_origins', async () => {
  const before = (await allEvents('?type=origin_denied')).length;
  await Promise.all(Array.from({ length: 30 }, () => w.fetch('/api/x', { headers: { origin: 'https://flood.example' } })));
  await sleep(4000); // events arrive 1-3 s after the request
  const after = (await allEvents('?type=origin_denied')).length;
  assert.ok(after - before <= 2, `a flood wrote ${after - before} events`);
});

test('audit_records_each_oauth_and_gateway_event_kind', async () => {
  const { basicAuth, browserFlow, pkce } = await import('./oauth.mjs');
  const c = await (await w.admin('/partners/acme/clients', {
    method: 'POST',
    body: {
      name: 'Audited',
      redirect_uris: ['https://app.acme.example/cb'],
      grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
      scopes: ['openid', 'api', 'reports'],
    },
  })).json();
  const post = (path, fields, auth = basicAuth(c.client_id, c.client_secret)) =>
    w.fetch(path, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: auth },
      body: new URLSearchParams(fields).toString(),
    });
  const { verifier, challenge } = pkce();
  const { callback } = await browserFlow(w, { client: c, username: 'rita', password: SECRET_PASSWORD, challenge, scope: 'openid api' });
  const code = callback.searchParams.get('code');
  const redeem = { grant_type: 'authorization_code', code, redirect_uri: c.redirect_uris[0], code_verifier: verifier };
  const tokens = await (await post('/oauth2/token', redeem)).json();
  assert.equal((await post('/oauth2/token', redeem)).status, 400, 'code replay');

  const { callback: cb2 } = await browserFlow(w, { client: c, username: 'rita', password: SECRET_PASSWORD, challenge, scope: 'openid api' });
  const t2 = await (await post('/oauth2/token', { ...redeem, code: cb2.searchParams.get('code') })).json();
  assert.equal((await post('/oauth2/token', { grant_type: 'refresh_token', refresh_token: t2.refresh_token })).status, 200);
  assert.equal((await post('/oauth2/token', { grant_type: 'refresh_token', refresh_token: t2.refresh_token })).status, 400, 'reuse');

  assert.equal((await post('/oauth2/token', { grant_type: 'client_credentials' }, basicAuth(c.client_id, 'wrong-secret'))).status, 401);
  assert.equal((await post('/oauth2/token', { ...redeem, code: 'AAAAAAAAAAAAAAAAAAAAAA.nope' })).status, 400, 'unknown code');
  assert.equal((await post('/oauth2/revoke', { token: tokens.refresh_token })).status, 200);
  const cc = await (await post('/oauth2/token', { grant_type: 'client_credentials', scope: 'reports' })).json();
  assert.equal((await w.fetch('/api/v1/x', { headers: { authorization: 'Bearer not.a.token' } })).status, 401);
  assert.equal((await w.fetch('/api/v1/x', { headers: { authorization: `Bearer ${cc.access_token}` } })).status, 403, 'scope');
  assert.equal((await w.admin('/partners', { token: 'y'.repeat(40) })).status, 401);
  assert.equal((await w.admin('/usage', { token: 'y'.repeat(40) })).status, 401);

  const kinds = ['authorization', 'code_replay', 'refresh_reuse', 'client_auth_failed', 'grant_refused', 'revocation', 'token_refused', 'scope_denied', 'admin_auth_failed'];
  const all = [];
  for (const k of kinds) {
    let found = [];
    const end = Date.now() + DEADLINE_MS;
    while (found.length === 0 && Date.now() < end) {
      found = await allEvents(`?type=${k}`);
      if (found.length === 0) await sleep(200);
    }
    assert.ok(found.length > 0, `no ${k} event within ${DEADLINE_MS / 1000} s`);
    all.push(...found);
  }
  const text = JSON.stringify(all);
  for (const secret of [code, tokens.refresh_token, tokens.access_token, t2.refresh_token, cc.access_token, c.client_secret, 'rita']) {
    assert.ok(!text.includes(secret), 'the audit log holds no codes, tokens, secrets or usernames');
  }
  assert.equal(all.find((e) => e.type === 'refresh_reuse').partner, 'acme');
});

// ---- The archive: layout, paging, faults, redelivery, migration ----

const HOUR = 3600;

function fakeEvent(ts, id, partner, type = 'login_failed') {
  return { id, ts, type, ...(partner ? { partner } : {}), route: '/login', status: 401, outcome: 'login_failed', request_id: `r${id}` };
}

/** Every event stored in the archive (read from the bucket itself), by id. */
async function archived(worker) {
  const bucket = await worker.r2Bucket('AUDIT_ARCHIVE');
  const out = [];
  let cursor;
  do {
    const page = await bucket.list({ prefix: 'events/', cursor });
    for (const o of page.objects) {
      const text = await (await bucket.get(o.key)).text();
      for (const line of text.split('\n').filter(Boolean)) out.push({ key: o.key, ...JSON.parse(line) });
    }
    cursor = page.truncated ? page.cursor : undefined;
  } while (cursor);
  return out;
}

function counts(list) {
  const m = new Map();
  for (const e of list) m.set(e.id, (m.get(e.id) ?? 0) + 1);
  return m;
}

/** Every page of `query` (limit `limit`), following next_cursor; the events in page order. */
async function allPages(worker, query, limit) {
  const out = [];
  let cursor = null;
  for (let pages = 0; pages < 500; pages++) {
    const q = `${query}${query ? '&' : '?'}limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
    const res = await worker.admin(`/audit${q}`);
    assert.equal(res.status, 200, q);
    const body = await res.json();
    out.push(...body.events);
    if (body.next_cursor === null) return out;
    cursor = body.next_cursor;
  }
  throw new Error('the cursor never reached the end');
}

/** Distinct failed sign-ins (an event each, never throttled); their request ids. */
async function failedSignIns(worker, n) {
  const ids = [];
  for (let i = 0; i < n; i++) {
    const jar = new CookieJar(worker.url);
    const res0 = await jar.fetch(`/login?return_to=${encodeURIComponent('/account')}`);
    const fields = formFields(await res0.text());
    const res = await jar.postForm('/login', { ...fields, username: 'nobody', password: `wrong-${i}-password` });
    assert.equal(res.status, 401);
    ids.push(res.headers.get('x-request-id'));
  }
  return ids;
}

/** Polls until every request id has its event in the archive; then checks each is there once. */
async function expectExactlyOnce(worker, requestIds, what) {
  const end = Date.now() + 60_000;
  let stored = [];
  while (Date.now() < end) {
    stored = await archived(worker);
    if (requestIds.every((r) => stored.some((e) => e.request_id === r))) break;
    await sleep(500);
  }
  const mine = stored.filter((e) => requestIds.includes(e.request_id));
  assert.equal(new Set(mine.map((e) => e.request_id)).size, requestIds.length, `${what}: every event arrived`);
  for (const [id, n] of counts(stored)) assert.equal(n, 1, `${what}: event ${id} stored ${n} times`);
  const listed = await allPages(worker, '', 100);
  for (const [id, n] of counts(listed)) assert.equal(n, 1, `${what}: event ${id} answered ${n} times`);
  for (const r of requestIds) assert.ok(listed.some((e) => e.request_id === r), `${what}: the query finds ${r}`);
  return stored;
}

async function withWorker(vars, fn) {
  const worker = await startWorker({ vars });
  try {
    return await fn(worker);
  } finally {
    await worker.stop();
  }
}

test('audit_archive_cursor_pages_through_hours_and_partners_without_gaps_or_repeats', async () => {
  await withWorker({}, async (x) => {
    const bucket = await x.r2Bucket('AUDIT_ARCHIVE');
    const now = Math.floor(Date.now() / 1000);
    const base = now - (now % HOUR) - 5 * HOUR;
    const expected = [];
    let n = 0;
    for (let h = 0; h < 5; h++) {
      for (const partner of ['acme', 'beta', null]) {
        const evs = [];
        for (let i = 0; i < 3 + h; i++) {
          const id = (++n).toString(16).padStart(32, '0');
          evs.push(fakeEvent(base + h * HOUR + i * 7, id, partner, i % 2 ? 'login' : 'login_failed'));
        }
        const hour = Math.floor(evs[0].ts / HOUR);
        const key = `events/${String(hour).padStart(10, '0')}/${partner ?? '_'}/${String(evs[0].ts).padStart(10, '0')}-${evs[0].id}.ndjson`;
        await bucket.put(key, evs.map((e) => JSON.stringify(e)).join('\n') + '\n');
        expected.push(...evs);
      }
    }
    // Older than the 90-day retention: never answered, even if the lifecycle rule has not run.
    const old = fakeEvent(now - 91 * 24 * HOUR, 'f'.repeat(32), 'acme');
    await bucket.put(`events/${String(Math.floor(old.ts / HOUR)).padStart(10, '0')}/acme/${String(old.ts).padStart(10, '0')}-${old.id}.ndjson`, JSON.stringify(old) + '\n');
    // Not the archive's layout: ignored.
    await bucket.put('events/garbage', 'not json');

    for (const limit of [1, 4, 7, 100]) {
      const got = await allPages(x, '', limit);
      assert.deepEqual(got.map((e) => e.id).sort(), expected.map((e) => e.id).sort(), `limit ${limit}: every event once`);
      const hours = got.map((e) => Math.floor(e.ts / HOUR));
      assert.deepEqual(hours, [...hours].sort((a, b) => a - b), 'oldest first by hour');
    }
    const acme = await allPages(x, '?partner=acme', 3);
    assert.deepEqual(acme.map((e) => e.id).sort(), expected.filter((e) => e.partner === 'acme').map((e) => e.id).sort());
    const typed = await allPages(x, '?partner=beta&type=login', 2);
    assert.deepEqual(typed.map((e) => e.id).sort(), expected.filter((e) => e.partner === 'beta' && e.type === 'login').map((e) => e.id).sort());
    const since = base + 3 * HOUR + 10;
    const recent = await allPages(x, `?since=${since}`, 5);
    assert.deepEqual(recent.map((e) => e.id).sort(), expected.filter((e) => e.ts >= since).map((e) => e.id).sort());
  });
});

test('audit_query_bounds_its_work_and_answers_a_cursor_when_it_stopped_early', async () => {
  await withWorker({}, async (x) => {
    const bucket = await x.r2Bucket('AUDIT_ARCHIVE');
    const now = Math.floor(Date.now() / 1000) - 60;
    for (let i = 0; i < 45; i++) {
      const e = fakeEvent(now + i % 50, (i + 1).toString(16).padStart(32, '0'), 'acme', 'login');
      await bucket.put(`events/${String(Math.floor(e.ts / HOUR)).padStart(10, '0')}/acme/${String(e.ts).padStart(10, '0')}-${e.id}.ndjson`, JSON.stringify(e) + '\n');
    }
    // No event matches: the first page reads at most its bound of objects and hands a cursor on.
    const first = await (await x.admin('/audit?type=code_replay')).json();
    assert.deepEqual(first.events, []);
    assert.equal(typeof first.next_cursor, 'string', 'stopped early: a cursor, not the end');
    const rest = await allPages(x, '?type=code_replay', 100);
    assert.deepEqual(rest, []);
    const logins = await allPages(x, '?type=login', 100);
    assert.equal(logins.length, 45);
  });
});

test('audit_queue_send_failures_lose_nothing', async () => {
  await withWorker({ EDGEWARD_INJECT_FAULTS: 'AUDIT_QUEUE:send:fail3' }, async (x) => {
    const ids = await failedSignIns(x, 4);
    await expectExactlyOnce(x, ids, 'queue send failing 3 times');
    assert.ok(x.logs.some((l) => l.includes('audit buffer: flush failed')), 'the failures happened');
  });
});

test('audit_archive_failures_below_max_retries_lose_and_duplicate_nothing', async () => {
  await withWorker({ EDGEWARD_INJECT_FAULTS: 'AUDIT_ARCHIVE:put:fail3' }, async (x) => {
    const ids = await failedSignIns(x, 3);
    await expectExactlyOnce(x, ids, 'archive failing 3 times');
    assert.ok(x.logs.some((l) => l.includes('not archived, retrying')), 'the failures happened');
  });
});

test('audit_archive_failures_beyond_max_retries_go_through_the_dead_letter_queue', async () => {
  // More failures than the queue's 5 retries of every message: they move to the DLQ, whose
  // consumer stores them.
  await withWorker({ EDGEWARD_INJECT_FAULTS: 'AUDIT_ARCHIVE:put:fail20' }, async (x) => {
    const ids = await failedSignIns(x, 2);
    await expectExactlyOnce(x, ids, 'archive failing past max_retries');
    assert.ok(x.logs.some((l) => /edgeward-audit-dlq: [1-9]\d* messages archived/.test(l)), 'the dead-letter queue stored them');
  });
});

test('audit_redelivered_message_is_stored_once', async () => {
  await withWorker({}, async (x) => {
    const now = Math.floor(Date.now() / 1000) - 5;
    const message = JSON.stringify({ events: [fakeEvent(now, 'a'.repeat(32), 'acme'), fakeEvent(now + 1, 'b'.repeat(32), null), fakeEvent(now + 2, 'c'.repeat(32), 'acme')] });
    const q = await x.queueProducer('AUDIT_QUEUE');
    await q.send(message);
    await q.send(message);
    await q.send(JSON.stringify({ events: [fakeEvent(now + 2, 'c'.repeat(32), 'acme'), fakeEvent(now + 1, 'b'.repeat(32), null), fakeEvent(now, 'a'.repeat(32), 'acme')] }));
    const end = Date.now() + 30_000;
    let stored = [];
    while (Date.now() < end) {
      stored = (await archived(x)).filter((e) => /^[abc]{32}$/.test(e.id));
      if (stored.length >= 3 && x.logs.filter((l) => /edgeward-audit: [1-9]\d* messages archived/.test(l)).length > 0) break;
      await sleep(300);
    }
    await sleep(2000); // let every delivery land
    stored = (await archived(x)).filter((e) => /^[abc]{32}$/.test(e.id));
    assert.deepEqual([...counts(stored).entries()].sort(), [['a'.repeat(32), 1], ['b'.repeat(32), 1], ['c'.repeat(32), 1]]);
    const listed = (await allPages(x, '', 100)).filter((e) => /^[abc]{32}$/.test(e.id));
    assert.equal(listed.length, 3);
  });
});

test('audit_migration_moves_the_old_log_into_the_archive_once', async () => {
  await withWorker({ EDGEWARD_AUDIT_LEGACY: '1' }, async (x) => {
    // Seeded the old way: this worker writes events to the one AuditLog object.
    await addPartner(x, 'acme', ['https://app.acme.example']);
    await addPartner(x, 'beta', ['https://app.beta.example']);
    const ids = await failedSignIns(x, 3);
    await sleep(1000);
    assert.equal((await allPages(x, '', 100)).length, 0, 'nothing in the archive before the move');
    const step = async (query = '') => {
      const res = await x.admin(`/audit/migrate${query}`, { method: 'POST' });
      assert.equal(res.status, 200);
      return res.json();
    };
    let progress;
    let calls = 0;
    do {
      progress = await step();
      calls++;
    } while (!progress.done && calls < 20);
    assert.equal(progress.done, true);
    const moved = await allPages(x, '', 2);
    assert.equal(moved.length, 5, 'two partner changes and three failed sign-ins');
    for (const r of ids) assert.ok(moved.some((e) => e.request_id === r && e.type === 'login_failed'));
    assert.ok(moved.every((e) => /^legacy\d{20}$/.test(e.id) && e.seq > 0), 'ids from the old seq');
    assert.equal(moved.filter((e) => e.type === 'admin_change').length, 2);

    const again = await step();
    assert.equal(again.done, true);
    assert.equal(again.moved, 0, 'a second run finds nothing left');
    const fromStart = await step('?from=0');
    assert.equal(fromStart.done, true);
    assert.equal(fromStart.moved, 5);
    const after = await archived(x);
    for (const [id, n] of counts(after)) assert.equal(n, 1, `event ${id} stored ${n} times after a rerun`);
    assert.equal((await allPages(x, '', 100)).length, 5);
    const anon = await x.admin('/audit/migrate', { method: 'POST', token: null });
    assert.equal(anon.status, 401);
    assert.equal((await x.admin('/audit/migrate')).status, 405);
  });
});
