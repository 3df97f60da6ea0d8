// The soak: a mixed load against the built Worker in local workerd (code flows, refreshes with
// some replays, gateway calls, automatic logins, double redemptions racing each other), then
// the books: no 5xx, every code redeemed at most once, every refresh family consistent, no
// grant lost (every issued refresh token that was not revoked still works once).
//   node scripts/soak.mjs [seconds, default 60] [concurrency, default 64]
// Exit status 1 when a book does not balance. scripts/soak.sh runs it; the e2e suite runs a
// short one (tests/e2e/soak.test.mjs).
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { startWorker, startOrigin } from '../tests/e2e/harness.mjs';
import { CookieJar, basicAuth, browserFlow, formFields, linkAndConfirm, pkce } from '../tests/e2e/oauth.mjs';
import { LINK_REQUEST_TYP, LOGIN_ASSERTION_TYP, generateJwk, publicJwk, signJwt } from './lib/jwk.mjs';

const PASSWORD = 'soak password 1234';
const PARTNER_ORIGIN = 'https://soak.example';
/** Users for a run: enough that none reaches the cap of live authorizations per app (256 in
 * about six minutes, `MAX_LIVE_GRANTS`) however long the soak runs. */
const usersFor = (seconds) => Math.max(12, Math.ceil((seconds / 60) * 48));
const MAX_LIMITS = { api_per_minute: 10_000_000, api_per_client_per_minute: 10_000_000, token_per_minute: 10_000_000, token_per_client_per_minute: 10_000_000 };

const jwt = (jwk, typ, payload) => signJwt(jwk, { alg: 'EdDSA', kid: jwk.kid, typ }, payload);

export async function soak({ seconds = 60, concurrency = 64, log = console.log } = {}) {
  const origin = await startOrigin();
  const w = await startWorker({ keepLogs: false, vars: { ORIGIN_URL: origin.url, API_SCOPES: '{"/api": "api"}' } });
  const books = {
    requests: 0,
    byStatus: {},
    fiveXx: [],
    codes: new Map(), // code -> successful redemptions
    families: [], // { rt, revoked, refreshes, replays }
    ops: {},
    violations: [],
  };
  const count = (res, what) => {
    books.requests += 1;
    books.byStatus[res.status] = (books.byStatus[res.status] ?? 0) + 1;
    if (res.status >= 500) books.fiveXx.push(`${what}: ${res.status}`);
    return res;
  };
  const violation = (msg) => books.violations.push(msg);
  try {
    const key = generateJwk('EdDSA');
    await w.admin('/partners/soak', {
      method: 'PUT',
      body: { name: 'Soak', origins: [PARTNER_ORIGIN], jwks: { keys: [publicJwk(key)] }, rate_limits: MAX_LIMITS },
    });
    const client = await (await w.admin('/partners/soak/clients', {
      method: 'POST',
      body: {
        name: 'Soak app',
        redirect_uris: [`${PARTNER_ORIGIN}/cb`],
        grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
        scopes: ['openid', 'profile', 'api'],
      },
    })).json();
    const post = (path, fields) =>
      w.fetch(path, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(client.client_id, client.client_secret) },
        body: new URLSearchParams(fields).toString(),
      });

    // Users, each with a browser (one Argon2id login each; later flows reuse the session) and
    // an account linked to the partner (for automatic logins).
    const users = [];
    for (let i = 0; i < usersFor(seconds); i++) {
      const username = `soak${i}`;
      await w.admin(`/users/${username}`, { method: 'PUT', body: { password: PASSWORD, name: `Soak ${i}` } });
      const jar = new CookieJar(w.url);
      let res = await jar.fetch(`/login?return_to=${encodeURIComponent('/account')}`);
      res = await jar.postForm('/login', { ...formFields(await res.text()), username, password: PASSWORD });
      if (res.status !== 303) throw new Error(`setup login ${username}: ${res.status}`);
      const now = Math.floor(Date.now() / 1000);
      const request = jwt(key, LINK_REQUEST_TYP, { iss: PARTNER_ORIGIN, aud: w.url, sub: `partner-${username}`, jti: randomUUID(), iat: now, exp: now + 240, return_to: `${PARTNER_ORIGIN}/linked`, account_label: username, state: randomUUID() });
      const { agreed, confirmed: linked } = await linkAndConfirm(jar, key, request);
      if (agreed.status !== 303) throw new Error(`setup link ${username}: ${agreed.status}`);
      if (linked.status !== 200) throw new Error(`setup link confirmation ${username}: ${linked.status}`);
      // Consent once, so that the load's code flows are the returning user's (no forms).
      const { verifier, challenge } = pkce();
      const { callback } = await browserFlow(w, { client, username, password: PASSWORD, challenge, scope: 'openid api', jar });
      const first = await post('/oauth2/token', { grant_type: 'authorization_code', code: callback.searchParams.get('code'), redirect_uri: client.redirect_uris[0], code_verifier: verifier });
      if (first.status !== 200) throw new Error(`setup code flow ${username}: ${first.status}`);
      const t = await first.json();
      books.families.push({ rt: t.refresh_token, at: t.access_token, revoked: false, refreshes: 0, replays: 0, busy: false });
      users.push({ username, jar });
    }
    const cc = await (await post('/oauth2/token', { grant_type: 'client_credentials', scope: 'api' })).json();
    const pick = (xs) => xs[Math.floor(Math.random() * xs.length)];

    const ops = {
      // A code flow for a signed-in user, then the code redeemed (sometimes twice, racing).
      async code() {
        const u = pick(users);
        const { verifier, challenge } = pkce();
        const { callback } = await browserFlow(w, { client, username: u.username, password: PASSWORD, challenge, scope: 'openid api', jar: u.jar });
        const code = callback.searchParams.get('code');
        const fields = { grant_type: 'authorization_code', code, redirect_uri: client.redirect_uris[0], code_verifier: verifier };
        const tries = Math.random() < 0.2 ? 2 : 1;
        const answers = await Promise.all(Array.from({ length: tries }, () => post('/oauth2/token', fields).then((r) => count(r, 'redeem'))));
        let wins = 0;
        for (const res of answers) {
          if (res.status === 200) {
            wins += 1;
            const t = await res.json();
            // A second use of a code revokes what the first one issued (RFC 6749 §4.1.2).
            books.families.push({ rt: t.refresh_token, at: t.access_token, revoked: tries > 1, refreshes: 0, replays: 0, busy: false });
          } else if (res.status !== 400) violation(`redeem answered ${res.status}`);
          else await res.arrayBuffer();
        }
        books.codes.set(code, wins);
        if (wins !== 1) violation(`code ${code.slice(0, 8)}… redeemed ${wins} times out of ${tries}`);
      },
      // A refresh of a live family; sometimes the old token is replayed, which must revoke it.
      async refresh() {
        const fam = books.families.find((f) => !f.revoked && !f.busy && Math.random() < 0.3);
        if (!fam) return;
        fam.busy = true;
        try {
          const res = count(await post('/oauth2/token', { grant_type: 'refresh_token', refresh_token: fam.rt }), 'refresh');
          if (res.status !== 200) {
            violation(`a live family's refresh answered ${res.status}: ${await res.text()}`);
            return;
          }
          const t = await res.json();
          const old = fam.rt;
          fam.rt = t.refresh_token;
          fam.at = t.access_token;
          fam.refreshes += 1;
          if (Math.random() < 0.1) {
            const replay = count(await post('/oauth2/token', { grant_type: 'refresh_token', refresh_token: old }), 'replay');
            if (replay.status !== 400) violation(`a replayed refresh token answered ${replay.status}`);
            await replay.arrayBuffer();
            fam.revoked = true;
            fam.replays += 1;
            const after = count(await post('/oauth2/token', { grant_type: 'refresh_token', refresh_token: fam.rt }), 'after-replay');
            if (after.status !== 400) violation(`a family revoked by a replay still refreshed (${after.status})`);
            await after.arrayBuffer();
          }
        } finally {
          fam.busy = false;
        }
      },
      // A gateway call with a service token or a user's access token.
      async api() {
        const fam = books.families.find((f) => !f.revoked && Math.random() < 0.2);
        const token = fam?.at ?? cc.access_token;
        const res = count(await w.fetch(`/api/v1/classes/${Math.floor(Math.random() * 100)}`, { headers: { authorization: `Bearer ${token}` } }), 'api');
        if (res.status !== 200 && !(fam && res.status === 401)) violation(`gateway answered ${res.status}`);
        await res.arrayBuffer();
      },
      // An automatic login of a linked user.
      async autologin() {
        const u = pick(users);
        const now = Math.floor(Date.now() / 1000);
        const assertion = jwt(key, LOGIN_ASSERTION_TYP, { iss: PARTNER_ORIGIN, aud: w.url, sub: `partner-${u.username}`, jti: randomUUID(), iat: now, exp: now + 60 });
        // As the partner's page posts it: the browser names the page's origin.
        const res = count(await w.fetch('/login/auto', {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded', origin: PARTNER_ORIGIN },
          body: new URLSearchParams({ assertion, return_to: '/account' }).toString(),
        }), 'autologin');
        if (res.status !== 303) violation(`automatic login answered ${res.status}`);
        await res.arrayBuffer();
      },
    };
    const weights = [['api', 50], ['refresh', 20], ['code', 15], ['autologin', 15]];
    const total = weights.reduce((a, [, n]) => a + n, 0);
    const choose = () => {
      let r = Math.random() * total;
      for (const [name, n] of weights) if ((r -= n) < 0) return name;
      return 'api';
    };

    log(`soak: ${seconds}s at concurrency ${concurrency} against ${w.url}`);
    const started = Date.now();
    const deadline = started + seconds * 1000;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (Date.now() < deadline) {
          const name = choose();
          books.ops[name] = (books.ops[name] ?? 0) + 1;
          try {
            await ops[name]();
          } catch (e) {
            violation(`${name} threw: ${e.message}`);
          }
        }
      }),
    );
    const elapsed = (Date.now() - started) / 1000;

    // The books, after the load: every family that was not revoked refreshes exactly once more.
    let live = 0;
    for (const fam of books.families.filter((f) => !f.revoked)) {
      live += 1;
      const res = count(await post('/oauth2/token', { grant_type: 'refresh_token', refresh_token: fam.rt }), 'final');
      if (res.status !== 200) violation(`grant lost: a live family's last refresh token answered ${res.status}`);
      await res.arrayBuffer();
    }
    // ...and every revoked family (code replayed, refresh token replayed) stays revoked.
    for (const fam of books.families.filter((f) => f.revoked)) {
      const res = count(await post('/oauth2/token', { grant_type: 'refresh_token', refresh_token: fam.rt }), 'final-revoked');
      if (res.status !== 400) violation(`a revoked family refreshed (${res.status})`);
      await res.arrayBuffer();
    }
    const revoked = books.families.filter((f) => f.revoked).length;
    const summary = {
      seconds: Number(elapsed.toFixed(1)),
      concurrency,
      counted_requests: books.requests, // token, gateway and automatic-login calls
      counted_requests_per_second: Number((books.requests / elapsed).toFixed(1)),
      operations: books.ops,
      statuses: books.byStatus,
      five_xx: books.fiveXx.length,
      codes_issued: books.codes.size,
      codes_redeemed_more_than_once: [...books.codes.values()].filter((n) => n > 1).length,
      refresh_families: books.families.length,
      families_live_and_checked: live,
      families_revoked_by_a_replay: revoked,
      refreshes: books.families.reduce((a, f) => a + f.refreshes, 0),
      origin_received: origin.received.length,
      violations: books.violations.length,
    };
    return { summary, violations: books.violations.slice(0, 20), fiveXx: books.fiveXx.slice(0, 20) };
  } finally {
    await w.stop();
    await origin.stop();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const seconds = Number(process.argv[2] ?? 60);
  const concurrency = Number(process.argv[3] ?? 64);
  const { summary, violations, fiveXx } = await soak({ seconds, concurrency });
  console.log('\n| figure | value |\n|---|---|');
  for (const [k, v] of Object.entries(summary)) console.log(`| ${k} | ${typeof v === 'object' ? JSON.stringify(v) : v} |`);
  for (const v of violations) console.log(`violation: ${v}`);
  for (const f of fiveXx) console.log(`5xx: ${f}`);
  const ok = summary.five_xx === 0 && summary.violations === 0 && summary.codes_redeemed_more_than_once === 0;
  console.log(ok ? '\nthe books balance' : '\nTHE BOOKS DO NOT BALANCE');
  process.exit(ok ? 0 : 1);
}
