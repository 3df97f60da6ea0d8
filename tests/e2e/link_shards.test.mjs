// Account links in hash shards of each region (issue 13): a link lives in the shard of its
// partner account in the user's region, automatic login asks the shard of the region the
// request comes from first (two round trips) and the others only if it has none, the two linking
// rules hold across shards and regions (also when two links race), and the move of the links
// of the layout before (one store per partner) into the shards is scripted and tested.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { startWorker, ROOT } from './harness.mjs';
import { CookieJar, confirmLink, formFields } from './oauth.mjs';
import { LINK_REQUEST_TYP, LOGIN_ASSERTION_TYP, generateJwk, publicJwk, signJwt } from '../../scripts/lib/jwk.mjs';

const PASSWORD = 'correct horse battery staple';
const ORIGIN = 'https://app.acme.example';
const key = generateJwk('EdDSA');
const SHARDS = 32;
const workers = [];
after(() => Promise.all(workers.map((w) => w.stop())));

/** The shard of a partner account: SHA-256, first 8 bytes big endian, mod 32 (store::links). */
function shardOf(sub) {
  return Number(createHash('sha256').update(sub).digest().readBigUInt64BE(0) % BigInt(SHARDS));
}

/** Two partner accounts in different shards. */
function twoShards(prefix) {
  const a = `${prefix}-${randomUUID()}`;
  for (;;) {
    const b = `${prefix}-${randomUUID()}`;
    if (shardOf(b) !== shardOf(a)) return [a, b];
  }
}

async function start(vars = {}) {
  const w = await startWorker({ vars: { DEFAULT_USER_REGION: '', ...vars } });
  workers.push(w);
  const put = await w.admin('/partners/acme', {
    method: 'PUT',
    body: { name: 'Acme Learning', origins: [ORIGIN], jwks: { keys: [publicJwk(key)] } },
  });
  assert.equal(put.status, 201);
  const salt = (await (await w.admin('/partners/acme')).json()).subject_salt;
  assert.ok(salt, 'the partner has a subject salt');
  return { w, salt };
}

async function addUser(w, username, region) {
  const res = await w.admin(`/users/${username}`, { method: 'PUT', body: { password: PASSWORD, name: username, region } });
  assert.equal(res.status, 201, await res.clone().text());
}

function linkRequest(w, sub) {
  const now = Math.floor(Date.now() / 1000);
  const payload = {
    iss: ORIGIN, aud: w.url, sub, jti: randomUUID(), iat: now, exp: now + 240,
    return_to: `${ORIGIN}/linked`, state: 'link-state', account_label: 'acme account',
  };
  return signJwt(key, { alg: 'EdDSA', kid: key.kid, typ: LINK_REQUEST_TYP }, payload);
}

function loginAssertion(w, sub) {
  const now = Math.floor(Date.now() / 1000);
  const payload = { iss: ORIGIN, aud: w.url, sub, jti: randomUUID(), iat: now, exp: now + 60 };
  return signJwt(key, { alg: 'EdDSA', kid: key.kid, typ: LOGIN_ASSERTION_TYP }, payload);
}

async function signedIn(w, username) {
  const jar = new CookieJar(w.url);
  let res = await jar.fetch(`/login?return_to=${encodeURIComponent('/account')}`);
  res = await jar.postForm('/login', { ...formFields(await res.text()), username, password: PASSWORD });
  assert.equal(res.status, 303, `${username} signs in`);
  return jar;
}

/** The consent half of linking: the answer to Allow (a 303 back to the partner with a link code,
 * or a refusal page), with the request it answered. */
async function consent(w, jar, sub) {
  const request = linkRequest(w, sub);
  const page = await jar.fetch(`/link?request=${encodeURIComponent(request)}`);
  assert.equal(page.status, 200, 'the consent page');
  const res = await jar.postForm('/link', { ...formFields(await page.text()), decision: 'allow' });
  return { res, request };
}

/** Consent and the partner's confirmation: the confirmation's response. */
async function linkUser(w, username, sub) {
  const jar = await signedIn(w, username);
  const { res, request } = await consent(w, jar, sub);
  assert.equal(res.status, 303, `${username}: consent answered ${res.status}: ${await res.clone().text()}`);
  return confirmLink(w.url, key, request, res.headers.get('location'));
}

/** An automatic login posted by the partner's page, from a pupil in `region`. */
function autoLogin(w, sub, region) {
  const headers = { origin: ORIGIN };
  if (region) headers['x-edgeward-visitor-region'] = region;
  return new CookieJar(w.url).postForm('/login/auto', { assertion: loginAssertion(w, sub), return_to: '/account' }, headers);
}

/** What the link store named `name` says of `sub` (eu objects are in the jurisdiction's local stand-in). */
function lookupIn(w, name, sub) {
  return w.objectCommand('LINKS', name, { lookup: { partner_sub: sub } });
}
const shardName = (salt, region, sub) => {
  const name = `links:v2:acme:${salt}:${region}:${shardOf(sub)}`;
  return region === 'eu' ? `jurisdiction/eu/${name}` : name;
};

let w;
let salt;
before(async () => {
  ({ w, salt } = await start());
  for (const [u, r] of [['ana', 'eu'], ['ben', 'us'], ['cleo', 'apac'], ['dev', 'uk'], ['eli', 'eu'], ['fay', 'us']]) await addUser(w, u, r);
});

test('links_live_in_the_shard_of_their_partner_account_in_the_users_region_and_nowhere_else', async () => {
  const sub = `acme-cleo-${randomUUID()}`;
  const res = await linkUser(w, 'cleo', sub);
  assert.equal(res.status, 200, await res.clone().text());
  const found = await lookupIn(w, shardName(salt, 'apac', sub), sub);
  assert.equal(found.Ok.username, 'cleo', JSON.stringify(found));
  for (const region of ['eu', 'uk', 'us', 'any']) {
    assert.equal((await lookupIn(w, shardName(salt, region, sub), sub)).Ok, null, `not in ${region}`);
  }
  assert.equal((await lookupIn(w, `links:acme:${salt}`, sub)).Ok, null, 'not in the store of the earlier layout');
  const links = (await (await w.admin('/users/cleo/links')).json()).links;
  assert.deepEqual(links.map((l) => [l.partner_id, l.partner_sub]), [['acme', sub]], 'the user records the account');
});

test('auto_login_finds_the_link_from_the_pupils_region_and_from_anywhere_else', async () => {
  const sub = `acme-dev-${randomUUID()}`;
  assert.equal((await linkUser(w, 'dev', sub)).status, 200);
  for (const from of ['uk', 'apac', undefined]) {
    const res = await autoLogin(w, sub, from);
    assert.equal(res.status, 303, `from ${from ?? 'nowhere known'}: ${res.status}`);
    assert.equal(res.headers.get('location'), `${w.url}/account`);
    assert.match(res.headers.get('set-cookie') ?? '', /edgeward_session=[^;]*\.uk;/, 'a session of the pupil in the UK');
  }
  const unknown = await autoLogin(w, `acme-nobody-${randomUUID()}`, 'uk');
  assert.equal(unknown.status, 403);
  assert.equal(unknown.headers.get('set-cookie'), null);
  assert.match(await unknown.text(), /not linked/);
});

test('auto_login_assertion_is_used_once_in_its_links_shard_whichever_region_the_replays_come_from', async () => {
  await addUser(w, 'oli', 'apac');
  const sub = `acme-oli-${randomUUID()}`;
  assert.equal((await linkUser(w, 'oli', sub)).status, 200);
  const assertion = loginAssertion(w, sub);
  const regions = ['apac', 'eu', 'uk', 'us', undefined];
  const attempts = Array.from({ length: 20 }, (_, i) => {
    const headers = { origin: ORIGIN };
    const region = regions[i % regions.length];
    if (region) headers['x-edgeward-visitor-region'] = region;
    return new CookieJar(w.url).postForm('/login/auto', { assertion, return_to: '/account' }, headers);
  });
  const answers = await Promise.all(attempts);
  const won = answers.filter((r) => r.status === 303);
  assert.equal(won.length, 1, `exactly one sign-in: ${answers.map((r) => r.status)}`);
  for (const r of answers.filter((x) => x.status !== 303)) {
    assert.equal(r.status, 403);
    assert.equal(r.headers.get('set-cookie'), null, 'no session for a replay');
    assert.equal(r.headers.get('location'), null);
    assert.match(await r.text(), /already used/);
  }
  // The page that asks first refuses it too, from anywhere.
  const asked = await new CookieJar(w.url).fetch(`/login/auto?assertion=${encodeURIComponent(assertion)}`, { headers: { 'x-edgeward-visitor-region': 'us' } });
  assert.equal(asked.status, 403);
  assert.match(await asked.text(), /already used/);
});

test('one_partner_account_links_one_user_across_regions_refused_at_consent', async () => {
  const sub = `acme-shared-${randomUUID()}`;
  assert.equal((await linkUser(w, 'ana', sub)).status, 200);
  const jar = await signedIn(w, 'ben');
  const { res } = await consent(w, jar, sub);
  assert.equal(res.status, 403, 'a user in another region cannot take the account');
  assert.equal(res.headers.get('location'), null, 'never redirected');
  assert.match(await res.text(), /already linked to another school account/);
  assert.equal((await lookupIn(w, shardName(salt, 'us', sub), sub)).Ok, null, 'nothing kept in the us shard');
});

test('one_partner_account_links_one_user_when_two_regions_race_exactly_one_wins', async () => {
  for (let round = 0; round < 3; round++) {
    const sub = `acme-race-${randomUUID()}`;
    // Both agree before either is confirmed: the consent checks pass for both.
    const [e, f] = [await signedIn(w, 'eli'), await signedIn(w, 'fay')];
    const a = await consent(w, e, sub);
    const b = await consent(w, f, sub);
    assert.equal(a.res.status, 303);
    assert.equal(b.res.status, 303);
    const answers = await Promise.all([
      confirmLink(w.url, key, a.request, a.res.headers.get('location')),
      confirmLink(w.url, key, b.request, b.res.headers.get('location')),
    ]);
    const statuses = answers.map((r) => r.status);
    const won = statuses.filter((s) => s === 200).length;
    assert.ok(won <= 1, `round ${round}: at most one link: ${statuses}`);
    for (const r of answers.filter((x) => x.status !== 200)) {
      assert.equal(r.status, 400);
      const body = await r.json();
      assert.equal(body.error, 'invalid_grant', JSON.stringify(body));
      assert.equal(body.link_token, undefined);
    }
    const inEu = (await lookupIn(w, shardName(salt, 'eu', sub), sub)).Ok;
    const inUs = (await lookupIn(w, shardName(salt, 'us', sub), sub)).Ok;
    assert.ok(!(inEu && inUs), `round ${round}: never linked in both regions`);
    const login = await autoLogin(w, sub, 'eu');
    if (won === 1) {
      const winner = statuses[0] === 200 ? 'eu' : 'us';
      assert.equal(login.status, 303, `round ${round}: the winner signs in`);
      assert.match(login.headers.get('set-cookie') ?? '', new RegExp(`edgeward_session=[^;]*\\.${winner};`));
    } else {
      assert.equal(login.status, 403, `round ${round}: nobody won, nobody signs in`);
    }
    // Free the users for the next round.
    for (const u of ['eli', 'fay']) await w.admin(`/users/${u}/links/acme`, { method: 'DELETE' });
  }
});

test('a_user_links_one_account_per_partner_whichever_shards_the_accounts_are_in', async () => {
  await addUser(w, 'gus', 'eu');
  const [first, second] = twoShards('acme-gus');
  assert.equal((await linkUser(w, 'gus', first)).status, 200);
  const jar = await signedIn(w, 'gus');
  const { res } = await consent(w, jar, second);
  assert.equal(res.status, 403, 'a second account of the partner for one user');
  assert.match(await res.text(), /already linked to another account at this partner/);

  // Agreed to both before either was confirmed: the second confirmation is refused.
  await addUser(w, 'hal', 'eu');
  const [x, y] = twoShards('acme-hal');
  const h = await signedIn(w, 'hal');
  const a = await consent(w, h, x);
  const b = await consent(w, h, y);
  assert.equal(a.res.status, 303);
  assert.equal(b.res.status, 303);
  assert.equal((await confirmLink(w.url, key, a.request, a.res.headers.get('location'))).status, 200);
  const refused = await confirmLink(w.url, key, b.request, b.res.headers.get('location'));
  assert.equal(refused.status, 400);
  const body = await refused.json();
  assert.equal(body.error, 'invalid_grant');
  assert.match(body.error_description, /already linked to another account at this partner/);
  assert.equal((await lookupIn(w, shardName(salt, 'eu', y), y)).Ok, null, 'the refused link is undone');
  assert.equal((await autoLogin(w, y, 'eu')).status, 403, 'the refused account signs nobody in');
  assert.equal((await autoLogin(w, x, 'eu')).status, 303, 'the first account still does');
  // The refused code redeemed again is unknown: never a replay that would unlink hal's link.
  const again = await confirmLink(w.url, key, b.request, b.res.headers.get('location'));
  assert.equal(again.status, 400);
  const againBody = await again.json();
  assert.equal(againBody.error, 'invalid_grant');
  assert.doesNotMatch(againBody.error_description, /removed/);
  const links = (await (await w.admin('/users/hal/links')).json()).links;
  assert.deepEqual(links.map((l) => l.partner_sub), [x], "hal's record keeps the first link");
  assert.equal((await autoLogin(w, x, 'eu')).status, 303, 'and it still signs hal in');
});

test('a_link_goes_to_the_users_own_region_whatever_region_the_session_cookie_names', async () => {
  await addUser(w, 'pia', 'uk');
  const sub = `acme-pia-${randomUUID()}`;
  const jar = await signedIn(w, 'pia');
  const session = jar.cookies.get('edgeward_session');
  assert.ok(session.endsWith('.uk'));
  // The region in the cookie is only how the user's object is reached: a UK user's object is
  // in the global namespace (hint weur), which a cookie naming another hint reaches too.
  jar.cookies.set('edgeward_session', session.replace(/\.uk$/, '.us'));
  const { res, request } = await consent(w, jar, sub);
  assert.equal(res.status, 303, await res.clone().text());
  assert.match(new URL(res.headers.get('location')).searchParams.get('link_code'), /^uk\./, 'the code names the user\'s region');
  assert.equal((await confirmLink(w.url, key, request, res.headers.get('location'))).status, 200);
  assert.equal((await lookupIn(w, shardName(salt, 'uk', sub), sub)).Ok.username, 'pia');
  assert.equal((await lookupIn(w, shardName(salt, 'us', sub), sub)).Ok, null, 'nothing in the region the cookie named');
});

test('a_link_code_naming_another_place_is_unknown_and_a_code_of_the_old_layout_too', async () => {
  await addUser(w, 'ivy', 'eu');
  const sub = `acme-ivy-${randomUUID()}`;
  const jar = await signedIn(w, 'ivy');
  const { res, request } = await consent(w, jar, sub);
  assert.equal(res.status, 303);
  const location = new URL(res.headers.get('location'));
  const code = location.searchParams.get('link_code');
  assert.match(code, new RegExp(`^eu\\.${shardOf(sub)}\\.[A-Za-z0-9_-]{43}$`), 'the code names its place');
  const [, n, secret] = code.split('.');
  for (const forged of [`us.${n}.${secret}`, `eu.${(Number(n) + 1) % SHARDS}.${secret}`, secret, `eu.${n}.${secret}x`]) {
    const at = new URL(location);
    at.searchParams.set('link_code', forged);
    const r = await confirmLink(w.url, key, request, at.toString());
    assert.equal(r.status, 400, forged);
    assert.equal((await r.json()).error, 'invalid_grant');
  }
  assert.equal((await confirmLink(w.url, key, request, location.toString())).status, 200, 'the real code still works');
});

test('links_migrate_moves_the_links_of_the_old_layout_and_everything_keeps_working', async () => {
  // A Worker that writes links as the layout before did (one store per partner, no account in
  // the user's record), with the upgrade's LINKS_LEGACY set.
  const { w: old, salt: oldSalt } = await start({ EDGEWARD_LINKS_LEGACY_WRITES: '1', LINKS_LEGACY: '1' });
  const people = [['jon', 'eu'], ['kim', 'apac'], ['lou', 'us']];
  const subs = {};
  for (const [u, r] of people) {
    await addUser(old, u, r);
    subs[u] = `acme-${u}-${randomUUID()}`;
    assert.equal((await linkUser(old, u, subs[u])).status, 200);
    assert.equal((await lookupIn(old, `links:acme:${oldSalt}`, subs[u])).Ok.username, u, 'seeded in the old store');
  }
  // A grant issued through jon's old link (jwt-bearer), so the move must carry it for unlinking.
  const svc = await (await old.admin('/partners/acme/clients', {
    method: 'POST',
    body: { name: 'Acme Server', grant_types: ['urn:ietf:params:oauth:grant-type:jwt-bearer'], scopes: ['openid'] },
  })).json();
  const now = Math.floor(Date.now() / 1000);
  const grant = signJwt(key, { alg: 'EdDSA', kid: key.kid, typ: 'JWT' }, {
    iss: ORIGIN, aud: `${old.url}/oauth2/token`, sub: subs.jon, jti: randomUUID(), iat: now, exp: now + 60,
  });
  const tokenRes = await fetch(`${old.url}/oauth2/token`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`${svc.client_id}:${svc.client_secret}`).toString('base64')}`,
    },
    body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion: grant }),
  });
  assert.equal(tokenRes.status, 200, await tokenRes.clone().text());
  const { access_token } = await tokenRes.json();
  const userinfo = () => fetch(`${old.url}/oauth2/userinfo`, { headers: { authorization: `Bearer ${access_token}` } });
  assert.equal((await userinfo()).status, 200);
  // Before the move, with LINKS_LEGACY: the old links sign in.
  assert.equal((await autoLogin(old, subs.kim, 'apac')).status, 303, 'an old link signs in during the upgrade');

  // The move, as the CLI runs it: bad requests first.
  for (const body of [{}, { partner: 'Not An Id' }, { partner: 'acme', extra: 1 }]) {
    const r = await old.admin('/links/migrate', { method: 'POST', body });
    assert.equal(r.status, 400, JSON.stringify(body));
    assert.equal((await r.json()).error, 'invalid_request');
  }
  assert.equal((await old.admin('/links/migrate', { method: 'POST', body: { partner: 'nobody' } })).status, 404);
  // Every partner, as an operator runs it.
  const cli = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'partner'), 'links-migrate'], {
    env: { PATH: process.env.PATH, EDGEWARD_URL: old.url, ADMIN_TOKEN: old.adminToken },
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(cli.status, 0, cli.stderr);
  assert.match(cli.stdout, /^done: 3 links moved into their shards, 0 replaced by newer links \(1 partners\)$/m);
  const r = await old.admin('/links/migrate', { method: 'POST', body: { partner: 'acme' } });
  assert.equal(r.status, 200);
  assert.deepEqual(await r.json(), { moved: 0, skipped: 0, done: true }, 'a second run moves nothing');

  for (const [u, region] of people) {
    assert.equal((await lookupIn(old, `links:acme:${oldSalt}`, subs[u])).Ok, null, `${u}: gone from the old store`);
    assert.equal((await lookupIn(old, shardName(oldSalt, region, subs[u]), subs[u])).Ok.username, u, `${u}: in the ${region} shard`);
    const links = (await (await old.admin(`/users/${u}/links`)).json()).links;
    assert.deepEqual(links.map((l) => l.partner_sub), [subs[u]], `${u}: the record names the account now`);
    const login = await autoLogin(old, subs[u], region);
    assert.equal(login.status, 303, `${u}: signs in after the move`);
  }
  // Unlinking a moved link ends the grant that came through it.
  assert.equal((await old.admin('/users/jon/links/acme', { method: 'DELETE' })).status, 204);
  assert.equal((await userinfo()).status, 401, 'the grant issued through the old link is revoked');
  assert.equal((await autoLogin(old, subs.jon, 'eu')).status, 403);
  assert.equal((await lookupIn(old, shardName(oldSalt, 'eu', subs.jon), subs.jon)).Ok, null);
});

test('links_migrate_keeps_a_link_made_since_the_upgrade_and_ends_the_old_one', async () => {
  const { w: old, salt: oldSalt } = await start({ EDGEWARD_LINKS_LEGACY_WRITES: '1', LINKS_LEGACY: '1' });
  await addUser(old, 'max', 'eu');
  await addUser(old, 'noa', 'eu');
  const sub = `acme-moved-${randomUUID()}`;
  assert.equal((await linkUser(old, 'max', sub)).status, 200);
  // Since the upgrade, the same partner account was linked to noa in its shard (as a Worker
  // without the seeding var would): max's old link is superseded.
  await old.admin('/users/max/links/acme', { method: 'DELETE' }).then((x) => assert.equal(x.status, 204));
  assert.equal((await linkUser(old, 'max', sub)).status, 200, 'max linked again in the old layout');
  const name = shardName(oldSalt, 'eu', sub);
  const pending = { partner_sub: sub, request_jti_hash: 'x', username: 'noa', user_sub: 'noa-sub', password_epoch: 0, expires_at: Math.floor(Date.now() / 1000) + 600, confirmed_by: null };
  await old.objectCommand('LINKS', name, { propose: { code_hash: 'h', pending, now: Math.floor(Date.now() / 1000) } });
  await old.objectCommand('LINKS', name, { confirm: { code_hash: 'h', partner_sub: sub, request_jti_hash: 'x', attempt: 'a', now: Math.floor(Date.now() / 1000) } });
  assert.equal((await lookupIn(old, name, sub)).Ok.username, 'noa');
  const r = await old.admin('/links/migrate', { method: 'POST', body: { partner: 'acme' } });
  assert.deepEqual(await r.json(), { moved: 0, skipped: 1, done: true });
  assert.equal((await lookupIn(old, name, sub)).Ok.username, 'noa', 'the newer link stands');
  assert.equal((await lookupIn(old, `links:acme:${oldSalt}`, sub)).Ok, null, 'the old one is gone');
  assert.deepEqual((await (await old.admin('/users/max/links')).json()).links, [], "max's record of the old link is gone");
});
