// Rate limits: per client and per partner on the gateway and the token endpoint (set per partner
// through the admin API), and per username and per IP on password sign-in. Each limit must bite
// exactly at its number, answer 429 with Retry-After and RateLimit-* headers, and recover.
// Each key's windows start at an offset of its own (protocol::ratelimit::window_offset_ms):
// the tests compute it from the key, as the Worker does.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { startWorker, addPartner, startOrigin, sleep } from './harness.mjs';
import { CookieJar, clientCredentials, formFields, serviceToken } from './oauth.mjs';
import { partnerWithLimits as sharedPartnerWithLimits, serviceClient } from './limits.mjs';

const PASSWORD = 'correct horse battery staple';
let w;
let origin;

before(async () => {
  origin = await startOrigin();
  w = await startWorker({
    vars: {
      ORIGIN_URL: origin.url,
      API_SCOPES: '{"/api": null}',
      LOGIN_FAILURES_PER_USER: '3',
      LOGIN_FAILURES_PER_IP: '5',
      LOGIN_FAILURES_PER_USER_ALL_NETWORKS: '6',
      LOGIN_WINDOW_SECONDS: '4',
    },
  });
});
after(async () => {
  await w?.stop();
  await origin?.stop();
});

const partnerWithLimits = (id, rateLimits) => sharedPartnerWithLimits(w, id, rateLimits);
const client = (partner) => serviceClient(w, partner);

const tokenRequest = (c) => clientCredentials(w, c);
const token = (c) => serviceToken(w, c);

const api = (tok) => w.fetch('/api/v1/x', { headers: { authorization: `Bearer ${tok}` } });

async function assertLimited(res, limit, message) {
  assert.equal(res.status, 429, message);
  const retry = Number(res.headers.get('retry-after'));
  assert.ok(retry >= 1 && retry <= 60, `${message}: Retry-After ${retry}`);
  assert.equal(res.headers.get('ratelimit-limit'), String(limit), message);
  assert.equal(res.headers.get('ratelimit-remaining'), '0', message);
  assert.equal(res.headers.get('ratelimit-reset'), String(retry), message);
  const body = await res.json();
  assert.equal(body.error, 'rate_limited', message);
  return retry;
}

test('admin_sets_and_shows_partner_rate_limits', async () => {
  const p = await partnerWithLimits('limited', { api_per_minute: 50, token_per_client_per_minute: 7 });
  assert.deepEqual(p.rate_limits, {
    api_per_minute: 50,
    api_per_client_per_minute: 3000,
    token_per_minute: 600,
    token_per_client_per_minute: 7,
  });
  assert.deepEqual((await (await w.admin('/partners/limited')).json()).rate_limits, p.rate_limits);
  for (const [bad, field] of [
    [{ api_per_minute: 0 }, 'rate_limits.api_per_minute'],
    [{ api_per_minute: 'lots' }, 'rate_limits.api_per_minute'],
    [{ per_day: 5 }, 'rate_limits'], // the unknown member is not named back
    [[5], 'rate_limits'],
  ]) {
    const res = await w.admin('/partners/limited', { method: 'PUT', body: { name: 'x', origins: ['https://limited.example'], rate_limits: bad } });
    assert.equal(res.status, 400, JSON.stringify(bad));
    assert.equal((await res.json()).field, field);
  }
});

test('ratelimit_api_client_limit_triggers_exactly_at_the_limit_and_recovers', async () => {
  await partnerWithLimits('exact', { api_per_client_per_minute: 40, api_per_minute: 1000 });
  const c = await client('exact');
  const tok = await token(c);
  await withRoomInWindow(`api:client:${c.client_id}`, 60_000, 15_000);
  const before = origin.received.length;
  const statuses = [];
  for (let i = 0; i < 45; i++) statuses.push((await api(tok)).status);
  assert.deepEqual(statuses, [...Array(40).fill(200), ...Array(5).fill(429)]);
  assert.equal(origin.received.length - before, 40, 'nothing over the limit reached the origin');
  const retry = await assertLimited(await api(tok), 40, 'over the limit');
  const untilEnd = (windowEnd(`api:client:${c.client_id}`, 60_000) - Date.now()) / 1000;
  assert.ok(Math.abs(retry - untilEnd) <= 1.5, `Retry-After ${retry} is the key's own window end (${untilEnd} s)`);
  await sleep(retry * 1000 + 200);
  assert.equal((await api(tok)).status, 200, 'a new window admits again');
});

test('ratelimit_parallel_requests_admit_exactly_the_limit', async () => {
  await partnerWithLimits('racing', { api_per_client_per_minute: 7 });
  const c = await client('racing');
  const tok = await token(c);
  await withRoomInWindow(`api:client:${c.client_id}`, 60_000, 5_000);
  const statuses = (await Promise.all(Array.from({ length: 20 }, () => api(tok)))).map((r) => r.status);
  assert.equal(statuses.filter((s) => s === 200).length, 7, `statuses: ${statuses}`);
  assert.equal(statuses.filter((s) => s === 429).length, 13, `statuses: ${statuses}`);
});

test('ratelimit_many_parallel_requests_for_one_key_never_admit_more_than_the_limit', async () => {
  // Issue 13: leases sized by demand and by what remains never add up past the limit, however
  // many requests race for it.
  await partnerWithLimits('crowd', { api_per_client_per_minute: 50, api_per_minute: 100_000 });
  const c = await client('crowd');
  const tok = await token(c);
  await withRoomInWindow(`api:client:${c.client_id}`, 60_000, 20_000);
  const before = origin.received.length;
  const statuses = [];
  for (let wave = 0; wave < 3; wave++) {
    const res = await Promise.all(Array.from({ length: 100 }, () => api(tok)));
    statuses.push(...res.map((r) => r.status));
  }
  const ok = statuses.filter((s) => s === 200).length;
  assert.equal(ok, 50, `admitted ${ok} of 300 under a limit of 50`);
  assert.equal(statuses.filter((s) => s === 429).length, 250);
  assert.equal(origin.received.length - before, 50, 'nothing over the limit reached the origin');
});

test('ratelimit_partner_limit_covers_all_its_clients', async () => {
  await partnerWithLimits('shared', { api_per_minute: 6, api_per_client_per_minute: 100 });
  const a = await token(await client('shared'));
  const b = await token(await client('shared'));
  await withRoomInWindow('api:partner:shared', 60_000, 5_000);
  for (let i = 0; i < 4; i++) assert.equal((await api(a)).status, 200);
  for (let i = 0; i < 2; i++) assert.equal((await api(b)).status, 200);
  const res = await api(b);
  await assertLimited(res.clone(), 6, "the partner's sixth was the last");
  assert.match((await res.json()).error_description, /partner/);
  // Another partner is not affected.
  await partnerWithLimits('bystander', {});
  assert.equal((await api(await token(await client('bystander')))).status, 200);
});

test('ratelimit_token_endpoint_per_client', async () => {
  await partnerWithLimits('tokens', { token_per_client_per_minute: 3 });
  const c = await client('tokens');
  await withRoomInWindow(`token:client:${c.client_id}`, 60_000, 5_000);
  for (let i = 0; i < 3; i++) assert.equal((await tokenRequest(c)).status, 200);
  await assertLimited(await tokenRequest(c), 3, 'fourth token request');
});

test('ratelimit_hits_are_audited', async () => {
  for (let i = 0; i < 50; i++) {
    const res = await w.admin('/audit?type=rate_limited');
    const { events } = await res.json();
    if (events.some((e) => e.route === '/api/*') && events.some((e) => e.route === '/oauth2/token')) return;
    await sleep(100);
  }
  assert.fail('no rate_limited audit events for the gateway and the token endpoint');
});

// Sign-in: 3 failures per username from one network, 5 per network, 6 per username from all
// networks, in a 4 s window (vars above).
async function signIn(username, password, ip) {
  const jar = new CookieJar(w.url);
  const form = await jar.fetch(`/login?return_to=${encodeURIComponent('/account')}`);
  const fields = formFields(await form.text());
  return jar.postForm('/login', { ...fields, username, password }, ip ? { 'cf-connecting-ip': ip } : {});
}

// Changed with issue 11: the username limit used to hold for every network, so the right
// password from another network waited too; now it is per network.
test('login_username_limit_slows_guessing_then_recovers', async () => {
  await w.admin('/users/gina', { method: 'PUT', body: { password: PASSWORD, name: 'Gina' } });
  await atWindowStart('login:net-user:10.0.0.1:gina');
  for (let i = 0; i < 3; i++) assert.equal((await signIn('gina', `guess-${i}-wrong`, '10.0.0.1')).status, 401);
  const locked = await signIn('gina', PASSWORD, '10.0.0.1');
  assert.equal(locked.status, 429, 'even the right password waits on that network');
  const retry = Number(locked.headers.get('retry-after'));
  assert.ok(retry >= 1 && retry <= 4, `Retry-After ${retry}`);
  const text = await locked.text();
  assert.match(text, /Too many sign-in attempts/);
  assert.equal(locked.headers.get('location'), null, 'no session, no redirect');
  assert.equal((await signIn('other-user', 'whatever-wrong', '10.0.0.1')).status, 401, 'other usernames are not locked');
  await sleep(retry * 1000 + 200);
  assert.equal((await signIn('gina', PASSWORD, '10.0.0.1')).status, 303, 'the real user gets in after the window');
});

test('login_failures_from_one_network_never_lock_the_user_out_of_a_new_browser_on_another', async () => {
  await w.admin('/users/pupil', { method: 'PUT', body: { password: PASSWORD, name: 'Pupil' } });
  await atWindowStart('login:net-user:203.0.113.9:pupil');
  // The attacker fails for pupil from address A until refused...
  for (let i = 0; i < 3; i++) assert.equal((await signIn('pupil', `wrong-${i}-password`, '203.0.113.9')).status, 401);
  const refused = await signIn('pupil', 'wrong-3-password', '203.0.113.9');
  assert.equal(refused.status, 429, 'the attacker is refused');
  assert.match(await refused.text(), /Too many sign-in attempts/);
  // ...the real user, from address B in a browser that never signed in (no device cookie),
  // gets in with the right password...
  const jar = new CookieJar(w.url);
  const form = await jar.fetch(`/login?return_to=${encodeURIComponent('/account')}`);
  assert.equal(jar.cookies.get('edgeward_device'), undefined, 'a new browser');
  const ok = await jar.postForm('/login', { ...formFields(await form.text()), username: 'pupil', password: PASSWORD }, { 'cf-connecting-ip': '198.51.100.20' });
  assert.equal(ok.status, 303);
  assert.equal(ok.headers.get('location'), `${w.url}/account`);
  assert.equal((await jar.fetch('/account')).status, 200, 'signed in');
  // ...and the attacker from A is still refused, even with the right password.
  const still = await signIn('pupil', PASSWORD, '203.0.113.9');
  assert.equal(still.status, 429);
  assert.equal(still.headers.get('location'), null);
  assert.equal(still.headers.get('set-cookie'), null, 'no session');
});

test('login_successes_do_not_count_against_the_limit', async () => {
  await w.admin('/users/hugo', { method: 'PUT', body: { password: PASSWORD, name: 'Hugo' } });
  for (let i = 0; i < 5; i++) assert.equal((await signIn('hugo', PASSWORD, '10.0.1.1')).status, 303, `sign-in ${i}`);
});

test('login_ip_limit_covers_many_usernames', async () => {
  await atWindowStart('login:ip:192.0.2.7'); // this IP's six failures fall in one window
  for (let i = 0; i < 5; i++) assert.equal((await signIn(`nobody${i}`, 'wrong-password-1', '192.0.2.7')).status, 401);
  assert.equal((await signIn('nobody9', 'wrong-password-1', '192.0.2.7')).status, 429, 'sixth failure from this IP');
  assert.equal((await signIn('nobody9', 'wrong-password-1', '192.0.2.8')).status, 401, 'another IP is not limited');
});

/** Where in a period of `len` ms the windows of limiter key `key` start: the first 8 bytes of
 * its SHA-256, big-endian, modulo `len` (protocol::ratelimit::window_offset_ms). */
function windowOffset(key, len) {
  return Number(createHash('sha256').update(key).digest().readBigUInt64BE(0) % BigInt(len));
}

/** When the current window of `key` ends (ms since the epoch). */
function windowEnd(key, len) {
  const now = Date.now();
  const into = (((now - windowOffset(key, len)) % len) + len) % len;
  return now - into + len;
}

/** Waits until a window of `key` (4 s sign-in windows by default) has just begun, so a test's
 * steps share one. */
async function atWindowStart(key, len = 4000) {
  await sleep(windowEnd(key, len) - Date.now() + 50);
}

/** Waits for the next window of `key` if less than `need` ms are left of the current one. */
async function withRoomInWindow(key, len, need) {
  if (windowEnd(key, len) - Date.now() < need) await atWindowStart(key, len);
}

test('login_lockout_spares_a_browser_where_the_user_signed_in_before', async () => {
  await w.admin('/users/iris', { method: 'PUT', body: { password: PASSWORD, name: 'Iris' } });
  const attempt = async (jar, password, ip) => {
    const form = await jar.fetch(`/login?return_to=${encodeURIComponent('/account')}`);
    return jar.postForm('/login', { ...formFields(await form.text()), username: 'iris', password }, { 'cf-connecting-ip': ip });
  };
  const home = new CookieJar(w.url);
  assert.equal((await attempt(home, PASSWORD, '10.2.0.1')).status, 303);
  assert.match(home.cookies.get('edgeward_device') ?? '', /^iris\./, 'the browser is remembered for iris');

  await atWindowStart('login:user:iris');
  // Someone keeps failing for iris from many networks until the username's ceiling over all
  // networks is reached...
  for (let i = 0; i < 6; i++) assert.equal((await signIn('iris', `wrong-${i}-password`, `10.2.1.${i}`)).status, 401);
  assert.equal((await signIn('iris', PASSWORD, '10.2.2.1')).status, 429, 'a new browser waits');
  // ...a made-up device cookie does not get round it...
  const forged = new CookieJar(w.url);
  forged.cookies.set('edgeward_device', `iris.${'A'.repeat(43)}`);
  assert.equal((await attempt(forged, PASSWORD, '10.2.2.2')).status, 429, 'an unknown device cookie counts as none');
  // ...but iris, in the browser she used before, gets in.
  const before = home.cookies.get('edgeward_device');
  assert.equal((await attempt(home, PASSWORD, '10.2.0.1')).status, 303, 'her own browser is not locked out');
  assert.notEqual(home.cookies.get('edgeward_device'), before, 'the device secret is replaced at each sign-in');
  // That browser has a limit of its own (counted under the hash of its device secret).
  const secret = home.cookies.get('edgeward_device').split('.').pop();
  await atWindowStart(`login:device:${createHash('sha256').update(secret).digest('base64url')}`);
  for (let i = 0; i < 3; i++) assert.equal((await attempt(home, `wrong-${i}-password`, '10.2.0.1')).status, 401);
  const limited = await attempt(home, PASSWORD, '10.2.0.1');
  assert.equal(limited.status, 429);
  assert.match(await limited.text(), /Too many sign-in attempts/);
});

test('login_ip_limit_counts_an_ipv6_64_as_one_network', async () => {
  await atWindowStart('login:ip:2001:db8:aa:1::/64');
  // Five failures, each from another address of one /64 (and other usernames, so only the
  // network counts): the sixth address of that /64 is limited.
  for (let i = 0; i < 5; i++) {
    assert.equal((await signIn(`v6user${i}`, 'wrong-password-1', `2001:db8:aa:1::${i + 1}`)).status, 401, `failure ${i}`);
  }
  const same = await signIn('v6user9', 'wrong-password-1', '2001:db8:aa:1:ffff:ffff:ffff:fffe');
  assert.equal(same.status, 429, 'another address of the same /64');
  assert.match(await same.text(), /Too many sign-in attempts/);
  // Another /64 next door is another network.
  assert.equal((await signIn('v6user9', 'wrong-password-1', '2001:db8:aa:2::1')).status, 401, 'another /64 is not limited');
});

test('login_ip_limit_counts_ipv4_mapped_ipv6_as_the_ipv4_address', async () => {
  await atWindowStart('login:ip:198.51.100.9');
  for (let i = 0; i < 5; i++) {
    assert.equal((await signIn(`v4user${i}`, 'wrong-password-1', i % 2 ? '::ffff:198.51.100.9' : '198.51.100.9')).status, 401, `failure ${i}`);
  }
  const limited = await signIn('v4user9', 'wrong-password-1', '::ffff:198.51.100.9');
  assert.equal(limited.status, 429, 'the mapped spelling is the same address');
  // IPv4 addresses are counted each on their own.
  assert.equal((await signIn('v4user9', 'wrong-password-1', '198.51.100.10')).status, 401, 'the next IPv4 address is not limited');
});

test('ratelimit_a_counter_is_deleted_by_its_alarm_when_its_windows_have_passed', async () => {
  // A limiter object is taken directly for a window of one second and a limit of one. The
  // second take of that window is refused; once the window (and the alarm) have passed, the
  // object holds nothing, so the same window would be counted afresh: only the alarm's deletion
  // can make that take succeed.
  const name = `limit:test:alarm-${Date.now()}`;
  const window = { start_ms: Date.now(), len_ms: 1000, limit: 1 };
  const take = () => w.objectCommand('LIMITS', name, { take: { window, want: 1 } });
  assert.deepEqual(await take(), { Ok: { n: 1 } });
  assert.deepEqual(await take(), { Ok: { n: 0 } }, 'the window is used up');
  const deadline = Date.now() + 15_000;
  let again;
  do {
    await sleep(500);
    again = await take();
  } while (again.Ok?.n !== 1 && Date.now() < deadline);
  assert.deepEqual(again, { Ok: { n: 1 } }, 'the alarm deleted the counter once its window had passed');
});
