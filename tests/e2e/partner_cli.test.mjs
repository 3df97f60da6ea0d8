// scripts/partner, the operator CLI: readable output, and a non-zero exit on every failure.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { startWorker, fetchRetryingIdempotent, ROOT } from './harness.mjs';
import { CookieJar, formFields } from './oauth.mjs';

let w;
before(async () => {
  w = await startWorker();
});
after(() => w?.stop());

/**
 * Runs the CLI without blocking the event loop: a blocked loop misses the Worker closing pooled
 * keep-alive connections, and the next admin call would fail on one.
 */
function run(argv, { env = {}, input, cmd = process.execPath } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, argv, {
      env: { PATH: process.env.PATH, EDGEWARD_URL: w.url, ADMIN_TOKEN: w.adminToken, ...env },
      timeout: 60_000,
    });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (c) => (out += c));
    child.stderr.setEncoding('utf8').on('data', (c) => (err += c));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out, err }));
    child.stdin.end(input);
  });
}

const cli = (args, env = {}, input = undefined) => run([path.join(ROOT, 'scripts', 'partner'), ...args], { env, input });

const record = async (p) => {
  const res = await w.admin(p);
  assert.equal(res.status, 200, p);
  const { updated_at, ...rest } = await res.json();
  return rest;
};

test('partner_cli_add_list_show_suspend_activate_remove', async () => {
  let r = await cli(['add', 'cli-demo', '--name', 'CLI Demo', '--origin', 'https://App.cli.example', '--origin', 'http://localhost:5173']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^cli-demo {2}ACTIVE {2}CLI Demo$/m);
  assert.match(r.out, /^ {4}https:\/\/app\.cli\.example$/m);

  r = await cli(['list']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /cli-demo {2}ACTIVE/);

  // International names are sent in their punycode form (the admin API takes only that).
  r = await cli(['add', 'cli-idn', '--name', 'IDN', '--origin', 'https://bücher.cli.example']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^ {4}https:\/\/xn--bcher-kva\.cli\.example$/m);

  r = await cli(['suspend', 'cli-demo']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /cli-demo {2}SUSPENDED/);
  assert.equal((await (await w.admin('/partners/cli-demo')).json()).status, 'suspended');

  // Suspending keeps everything else, keys included.
  await w.admin('/partners/cli-demo', {
    method: 'PUT',
    body: { name: 'CLI Demo', origins: ['https://app.cli.example'], status: 'suspended', jwks_uri: 'https://app.cli.example/jwks.json' },
  });
  r = await cli(['activate', 'cli-demo']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /cli-demo {2}ACTIVE/);

  assert.equal((await (await w.admin('/partners/cli-demo')).json()).jwks_uri, 'https://app.cli.example/jwks.json');
  r = await cli(['show', 'cli-demo']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /keys: https:\/\/app\.cli\.example\/jwks\.json/);

  // Rate limits: set some, keep the rest; suspending keeps them too.
  r = await cli(['limits', 'cli-demo', '--api-per-minute', '120', '--token-per-client-per-minute', '9']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /limits\/min: api 120 \(per client 3000\), token 600 \(per client 9\)/);
  r = await cli(['limits', 'cli-demo', '--api-per-minute', 'many']);
  assert.equal(r.code, 2);
  assert.match(r.err, /whole number/);
  r = await cli(['suspend', 'cli-demo']);
  assert.equal(r.code, 0, r.err);
  assert.deepEqual((await (await w.admin('/partners/cli-demo')).json()).rate_limits, {
    api_per_minute: 120,
    api_per_client_per_minute: 3000,
    token_per_minute: 600,
    token_per_client_per_minute: 9,
  });

  r = await cli(['remove', 'cli-demo']);
  assert.equal(r.code, 0, r.err);
  assert.equal((await w.admin('/partners/cli-demo')).status, 404);
});

test('partner_cli_failures_exit_non_zero_with_the_reason', async () => {
  let r = await cli(['show', 'nobody']);
  assert.equal(r.code, 1);
  assert.match(r.err, /404.*not_found/);

  r = await cli(['add', 'bad', '--name', 'Bad', '--origin', 'http://bad.example']);
  assert.equal(r.code, 1);
  assert.match(r.err, /400.*origins\[0\]/);

  r = await cli(['list'], { ADMIN_TOKEN: 'x'.repeat(40) });
  assert.equal(r.code, 1);
  assert.match(r.err, /401/);

  r = await cli(['list'], { EDGEWARD_URL: 'http://127.0.0.1:9' });
  assert.equal(r.code, 1);
  assert.match(r.err, /cannot reach/);

  r = await cli(['add', 'x', '--origin', 'https://x.example']);
  assert.equal(r.code, 2);
  assert.match(r.err, /--name/);

  r = await cli(['frobnicate']);
  assert.equal(r.code, 2);
});

test('partner_cli_client_and_user_commands', async () => {
  assert.equal((await cli(['add', 'cliapp', '--name', 'CLI App', '--origin', 'https://cliapp.example'])).code, 0);
  let r = await cli([
    'client', 'add', 'cliapp', '--name', 'CLI Web',
    '--redirect-uri', 'https://cliapp.example/cb', '--scope', 'openid', '--scope', 'profile',
  ]);
  assert.equal(r.code, 0, r.err);
  const clientId = r.out.match(/^([A-Za-z0-9_-]{22}) {2}CLI Web/m)?.[1];
  assert.ok(clientId, r.out);
  assert.match(r.out, /client_secret: [A-Za-z0-9_-]{43}/);

  r = await cli(['client', 'show', clientId]);
  assert.equal(r.code, 0, r.err);
  assert.doesNotMatch(r.out, /client_secret:/);
  assert.match(r.out, /redirect: https:\/\/cliapp\.example\/cb/);

  r = await cli(['client', 'list', 'cliapp']);
  assert.match(r.out, new RegExp(clientId));

  r = await cli(['client', 'add', 'cliapp', '--name', 'Bad', '--redirect-uri', 'https://evil.example/cb']);
  assert.equal(r.code, 1);
  assert.match(r.err, /400.*redirect_uris\[0\]/);

  r = await cli(['client', 'remove', clientId]);
  assert.equal(r.code, 0, r.err);

  // Client ids are base64url: one in 64 starts with '-', and is still an id, not a flag.
  r = await cli(['client', 'show', '-AbCdEfGhIjKlMnOpQrStU']);
  assert.equal(r.code, 1, r.err);
  assert.match(r.err, /\(404\)/);
  r = await cli(['client', 'show', '--help']);
  assert.equal(r.code, 0, r.err);

  const add = await cli(['user', 'add', 'carol', '--name', 'Carol', '--role', 'teacher', '--password-stdin'], {}, 'a long enough password\n');
  assert.equal(add.code, 0, add.err);
  assert.match(add.out, /^carol {2}Carol$/m);
  assert.match(add.out, /roles: teacher/);

  r = await cli(['user', 'show', 'carol']);
  assert.equal(r.code, 0, r.err);
  r = await cli(['user', 'remove', 'carol']);
  assert.equal(r.code, 0, r.err);
  r = await cli(['user', 'show', 'carol']);
  assert.equal(r.code, 1);
  assert.match(r.err, /404/);
});

test('partner_cli_client_without_pkce_with_logout_uris_and_a_user_whose_email_was_checked', async () => {
  assert.equal((await cli(['add', 'cliopt', '--name', 'CLI Options', '--origin', 'https://cliopt.example'])).code, 0);
  let r = await cli([
    'client', 'add', 'cliopt', '--name', 'Passport app', '--redirect-uri', 'https://cliopt.example/cb',
    '--post-logout-redirect-uri', 'https://cliopt.example/bye', '--no-pkce',
  ]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /PKCE: not required/);
  assert.match(r.out, /after logout: https:\/\/cliopt\.example\/bye/);
  assert.match(r.out, /id tokens: RS256/, 'the default');
  const clientId = r.out.match(/^([A-Za-z0-9_-]{22}) {2}Passport app/m)?.[1];
  const stored = await (await w.admin(`/clients/${clientId}`)).json();
  assert.equal(stored.require_pkce, false);
  assert.deepEqual(stored.post_logout_redirect_uris, ['https://cliopt.example/bye']);

  r = await cli(['user', 'add', 'vera', '--name', 'Vera', '--email', 'vera@school.example', '--email-verified', '--password-stdin'], {}, 'a long enough password\n');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /<vera@school\.example> \(checked\)/);
  // An update that keeps the address keeps it checked; a new address is not checked.
  r = await cli(['user', 'update', 'vera', '--name', 'Vera B']);
  assert.equal((await (await w.admin('/users/vera')).json()).email_verified, true);
  r = await cli(['user', 'update', 'vera', '--email', 'vera.b@school.example']);
  assert.equal(r.code, 0, r.err);
  assert.equal((await (await w.admin('/users/vera')).json()).email_verified, false);
  r = await cli(['user', 'update', 'vera', '--email-verified']);
  assert.equal((await (await w.admin('/users/vera')).json()).email_verified, true);
  r = await cli(['user', 'update', 'vera', '--email-verified', '--email-unverified']);
  assert.equal(r.code, 2);
});

test('partner_cli_test_key_signs_link_requests_and_login_assertions', async () => {
  const { mkdtempSync, rmSync } = await import('node:fs');
  const os = await import('node:os');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'edgeward-keys-'));
  try {
    assert.equal((await cli(['add', 'keyed', '--name', 'Keyed', '--origin', 'https://keyed.example'])).code, 0);
    let r = await cli(['testkey', 'keyed'], { EDGEWARD_KEY_DIR: dir });
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /"d":/, 'prints the private test key');
    const partner = await (await w.admin('/partners/keyed')).json();
    assert.equal(partner.jwks.keys.length, 1);
    assert.equal(partner.jwks.keys[0].d, undefined, 'only the public key is stored');

    r = await cli(['link-request', 'keyed', '--sub', 'keyed-user-1', '--state', 's9'], { EDGEWARD_KEY_DIR: dir });
    assert.equal(r.code, 0, r.err);
    const linkUrl = r.out.trim();
    assert.match(linkUrl, /\/link\?request=/);
    const res = await fetchRetryingIdempotent(linkUrl, { redirect: 'manual' });
    assert.equal(res.status, 302, 'a valid request: on to the login page');
    assert.match(res.headers.get('location'), /^\/login\?return_to=/);

    r = await cli(['login-assertion', 'keyed', '--sub', 'keyed-user-1'], { EDGEWARD_KEY_DIR: dir });
    assert.equal(r.code, 0, r.err);
    const auto = await fetchRetryingIdempotent(r.out.trim(), { redirect: 'manual' });
    assert.equal(auto.status, 403, 'valid, but not linked yet');
    assert.match(await auto.text(), /not linked/);

    // The rest of the flow, with the CLI as the partner's server: the user agrees, the browser
    // comes back with a link code, and link-confirm redeems it once.
    const request = new URL(linkUrl).searchParams.get('request');
    await w.admin('/users/keyed-user', { method: 'PUT', body: { password: 'keyed password 123', name: 'Keyed User' } });
    const jar = new CookieJar(w.url);
    let page = await jar.fetch(`/login?return_to=${encodeURIComponent('/account')}`);
    page = await jar.postForm('/login', { ...formFields(await page.text()), username: 'keyed-user', password: 'keyed password 123' });
    assert.equal(page.status, 303);
    page = await jar.fetch(`/link?request=${encodeURIComponent(request)}`);
    const consent = await page.text();
    assert.match(consent, /calls it: <strong>keyed-user-1<\/strong>/, 'the label defaults to the sub');
    const agreed = await jar.postForm('/link', { ...formFields(consent), decision: 'allow' });
    assert.equal(agreed.status, 303);
    const code = new URL(agreed.headers.get('location')).searchParams.get('link_code');
    r = await cli(['link-confirm', 'keyed', '--request', request, '--code', code], { EDGEWARD_KEY_DIR: dir });
    assert.equal(r.code, 0, r.err);
    assert.equal(JSON.parse(r.out).partner_sub, 'keyed-user-1');
    assert.ok(JSON.parse(r.out).link_token);
    r = await cli(['link-confirm', 'keyed', '--request', request, '--code', code], { EDGEWARD_KEY_DIR: dir });
    assert.equal(r.code, 1, 'a link code is used once');
    assert.match(r.err, /invalid_grant/);
    // --form: the form a partner's page posts (from its own origin, it signs in at once).
    r = await cli(['login-assertion', 'keyed', '--sub', 'keyed-user-1', '--form'], { EDGEWARD_KEY_DIR: dir });
    assert.equal(r.code, 0, r.err);
    const form = r.out.trim();
    assert.match(form, new RegExp(`^<form method="post" action="${w.url}/login/auto">`));
    const fields = Object.fromEntries([...form.matchAll(/name="([^"]+)" value="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    assert.deepEqual(Object.keys(fields), ['assertion', 'return_to']);
    const posted = await fetch(`${w.url}/login/auto`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: 'https://keyed.example' },
      body: new URLSearchParams(fields),
    });
    assert.equal(posted.status, 403, 'a valid form, but not linked yet');
    assert.match(await posted.text(), /not linked/);

    r = await cli(['link-request', 'keyed', '--sub', 'x'], { EDGEWARD_KEY_DIR: path.join(dir, 'missing') });

    r = await cli(['link-request', 'keyed', '--sub', 'x'], { EDGEWARD_KEY_DIR: path.join(dir, 'missing') });
    assert.equal(r.code, 2, 'no test key yet');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('partner_cli_add_never_replaces_an_existing_partner_and_update_keeps_what_it_does_not_name', async () => {
  assert.equal((await cli(['add', 'keep', '--name', 'Keep', '--origin', 'https://keep.example'])).code, 0);
  await w.admin('/partners/keep', {
    method: 'PUT',
    body: { name: 'Keep', origins: ['https://keep.example'], status: 'suspended', jwks_uri: 'https://keep.example/jwks.json', rate_limits: { api_per_minute: 77 } },
  });
  const before = await record('/partners/keep');

  // add on an existing partner: refused, nothing written.
  let r = await cli(['add', 'keep', '--name', 'Other', '--origin', 'https://other.keep.example']);
  assert.equal(r.code, 1, r.err);
  assert.equal(
    r.err,
    'error: partner keep exists already: nothing was changed. Use "scripts/partner update keep ..." to change some fields and keep the rest, or add --replace to replace the whole record (its keys, rate limits and status are lost unless given)\n',
  );
  assert.deepEqual(await record('/partners/keep'), before);
  r = await cli(['add', 'keep', '--if-missing', '--name', 'Other', '--origin', 'https://other.keep.example']);
  assert.equal(r.code, 0, r.err);
  assert.equal(r.out, 'partner keep exists: left as it is\n');
  assert.deepEqual(await record('/partners/keep'), before);

  // update changes what it names, and only that.
  r = await cli(['update', 'keep', '--name', 'Keep Renamed', '--add-origin', 'https://two.keep.example']);
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(await record('/partners/keep'), { ...before, name: 'Keep Renamed', origins: ['https://keep.example', 'https://two.keep.example'] });
  r = await cli(['update', 'keep', '--name', 'Keep', '--remove-origin', 'https://two.keep.example']);
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(await record('/partners/keep'), before, 'back to where it started: keys, limits and status kept');
  r = await cli(['update', 'keep', '--remove-origin', 'https://never.keep.example']);
  assert.equal(r.code, 2);
  assert.match(r.err, /^error: --remove-origin https:\/\/never\.keep\.example: not an origin of keep$/m);
  r = await cli(['update', 'keep']);
  assert.equal(r.code, 2);
  assert.match(r.err, /update needs at least one field/);

  // --replace is the explicit way to replace the whole record.
  r = await cli(['add', 'keep', '--replace', '--name', 'Fresh', '--origin', 'https://keep.example']);
  assert.equal(r.code, 0, r.err);
  const fresh = await record('/partners/keep');
  assert.equal(fresh.status, 'active');
  assert.equal(fresh.jwks_uri, undefined);
});

test('partner_cli_user_add_never_replaces_an_existing_user_and_user_update_keeps_the_rest', async () => {
  let r = await cli(['user', 'add', 'dora', '--name', 'Dora', '--email', 'dora@school.example', '--role', 'teacher', '--password-stdin'], {}, 'a long enough password\n');
  assert.equal(r.code, 0, r.err);
  const before = await record('/users/dora');

  r = await cli(['user', 'add', 'dora', '--name', 'Not Dora', '--password', 'another long password']);
  assert.equal(r.code, 1, r.err);
  assert.equal(
    r.err,
    'error: user dora exists already: nothing was changed. Use "scripts/partner user update dora ..." to change some fields and keep the rest, or add --replace to set name, email and roles to exactly those given\n',
  );
  assert.deepEqual(await record('/users/dora'), before);
  r = await cli(['user', 'add', 'dora', '--if-missing', '--name', 'Not Dora', '--password', 'another long password']);
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(await record('/users/dora'), before);

  r = await cli(['user', 'update', 'dora', '--name', 'Dora B']);
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(await record('/users/dora'), { ...before, name: 'Dora B' });
  r = await cli(['user', 'update', 'dora', '--no-email', '--role', 'pupil', '--role', 'helper']);
  assert.equal(r.code, 0, r.err);
  const { email, ...noEmail } = before;
  assert.equal(email, 'dora@school.example');
  assert.deepEqual(await record('/users/dora'), { ...noEmail, name: 'Dora B', roles: ['pupil', 'helper'] });

  r = await cli(['user', 'add', 'dora', '--replace', '--name', 'Dora C']);
  assert.equal(r.code, 0, r.err);
  const replaced = await record('/users/dora');
  assert.deepEqual([replaced.name, replaced.email, replaced.roles], ['Dora C', undefined, []]);
});

test('partner_cli_user_add_puts_the_user_in_the_region_given_and_refuses_another', async () => {
  let r = await cli(['user', 'add', 'greta', '--name', 'Greta', '--region', 'apac', '--password-stdin'], {}, 'a long enough password\n');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^ {4}region: apac$/m);
  assert.equal((await record('/users/greta')).region, 'apac');
  // Without --region, the Worker's DEFAULT_USER_REGION (the harness: eu).
  r = await cli(['user', 'add', 'hugo', '--name', 'Hugo', '--password', 'a long enough password']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^ {4}region: eu$/m);
  r = await cli(['user', 'add', 'ines', '--name', 'Ines', '--region', 'mars', '--password', 'a long enough password']);
  assert.equal(r.code, 1);
  assert.match(r.err, /400.*region: must be one of eu, uk, us, apac/);
  r = await cli(['user', 'show', 'ines']);
  assert.equal(r.code, 1);
  assert.match(r.err, /404/);
});

test('partner_cli_registration_tokens_are_made_listed_and_revoked', async () => {
  assert.equal((await cli(['add', 'clireg', '--name', 'CLI Reg', '--origin', 'https://clireg.example'])).code, 0);
  let r = await cli([
    'registration-token', 'add', 'clireg', '--scope', 'openid', '--scope', 'email', '--grant', 'authorization_code',
    '--expires-in-days', '2', '--max-registrations', '3', '--label', 'certification', '--allow-no-pkce',
  ]);
  assert.equal(r.code, 0, r.err);
  const token = r.out.match(/token \(shown once; give it to the partner\): ([A-Za-z0-9_-]{43})$/m)?.[1];
  const id = r.out.match(/^([A-Za-z0-9_-]{16}) \(certification\) {2}partner clireg$/m)?.[1];
  assert.ok(token && id, r.out);
  assert.match(r.out, /grants: authorization_code; scopes: openid email/);
  assert.match(r.out, /PKCE: confidential clients may go without/);
  assert.match(r.out, /registered: 0 of 3; expires /);
  const reg = await w.fetch('/oauth2/register', {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ client_name: 'Self-registered', redirect_uris: ['https://clireg.example/cb'] }),
  });
  assert.equal(reg.status, 201);
  const client = await reg.json();
  assert.equal(client.require_pkce, false);
  r = await cli(['registration-token', 'list', 'clireg']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /registered: 1 of 3/);
  assert.ok(!r.out.includes(token), 'a listing never shows the token');
  r = await cli(['client', 'end-registration', client.client_id]);
  assert.equal(r.code, 0, r.err);
  const read = await w.fetch(`/oauth2/register/${client.client_id}`, { headers: { authorization: `Bearer ${client.registration_access_token}` } });
  assert.equal(read.status, 401);
  r = await cli(['registration-token', 'revoke', id]);
  assert.equal(r.code, 0, r.err);
  assert.equal((await cli(['registration-token', 'revoke', id])).code, 1, 'revoking twice is a failure');
  r = await cli(['registration-token', 'list', 'clireg']);
  assert.match(r.out, /^no registration tokens$/m);
  assert.equal((await cli(['registration-token', 'add', 'clireg', '--expires-in-days', 'soon'])).code, 2);
  assert.equal((await cli(['registration-token', 'add', 'clireg', '--scope', 'bad scope'])).code, 1);
});

test('partner_cli_every_command_answers_help_without_a_token_or_server', async () => {
  const env = { ADMIN_TOKEN: '', EDGEWARD_URL: 'http://127.0.0.1:9' };
  const commands = [
    ['add'], ['update'], ['list'], ['show'], ['suspend'], ['activate'], ['remove'], ['limits'], ['usage'], ['usage-migrate'], ['links-migrate'],
    ['testkey'], ['link-request'], ['login-assertion'],
    ['client'], ['client', 'add'], ['client', 'list'], ['client', 'show'], ['client', 'remove'], ['client', 'end-registration'],
    ['registration-token'], ['registration-token', 'add'], ['registration-token', 'list'], ['registration-token', 'revoke'],
    ['user'], ['user', 'add'], ['user', 'update'], ['user', 'show'], ['user', 'remove'],
  ];
  for (const cmd of commands) {
    for (const flag of ['--help', '-h']) {
      const r = await cli([...cmd, flag], env);
      assert.equal(r.code, 0, `${cmd.join(' ')} ${flag}: ${r.err}`);
      assert.equal(r.err, '', cmd.join(' '));
      assert.ok(r.out.startsWith(`usage: scripts/partner ${cmd[0]}`), `${cmd.join(' ')}: ${r.out}`);
      if (cmd[1]) assert.match(r.out, new RegExp(`(^|scripts/partner )${cmd[0]} ${cmd[1]} `, 'm'), cmd.join(' '));
    }
  }
  // Help after other arguments too, and for the whole CLI.
  assert.equal((await cli(['add', 'acme', '--name', 'A', '--help'], env)).code, 0);
  for (const args of [['--help'], ['-h'], ['help'], ['help', 'update']]) {
    const r = await cli(args, env);
    assert.equal(r.code, 0, args.join(' '));
    assert.match(r.out, /^usage: scripts\/partner /);
  }
});

test('partner_cli_missing_or_broken_files_are_a_one_line_error', async () => {
  const { mkdtempSync, rmSync, writeFileSync } = await import('node:fs');
  const os = await import('node:os');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'edgeward-cli-'));
  try {
    const missing = path.join(dir, 'missing.json');
    const broken = path.join(dir, 'broken.json');
    writeFileSync(broken, '{"keys": [');
    for (const [args, want] of [
      [['add', 'filed', '--name', 'F', '--origin', 'https://filed.example', '--jwks', missing], `error: --jwks ${missing}: cannot read the file (no such file)`],
      [['add', 'filed', '--name', 'F', '--origin', 'https://filed.example', '--jwks', broken], `error: --jwks ${broken}: not valid JSON`],
      [['update', 'filed', '--jwks', missing], `error: --jwks ${missing}: cannot read the file (no such file)`],
      [['client', 'add', 'filed', '--name', 'C', '--jwks', missing], `error: --jwks ${missing}: cannot read the file (no such file)`],
    ]) {
      const r = await cli(args);
      assert.equal(r.code, 2, args.join(' '));
      assert.equal(r.err.split('\n')[0], want);
      assert.doesNotMatch(r.err, /^\s+at /m, 'no stack trace');
      assert.doesNotMatch(r.err, /Error:/);
    }
    assert.equal((await w.admin('/partners/filed')).status, 404, 'nothing was written');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('partner_cli_testkey_adds_to_the_partners_keys_and_keeps_its_limits', async () => {
  const { mkdtempSync, rmSync } = await import('node:fs');
  const os = await import('node:os');
  const { generateJwk, publicJwk } = await import('../../scripts/lib/jwk.mjs');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'edgeward-keys-'));
  try {
    const own = publicJwk(generateJwk('EdDSA'));
    await w.admin('/partners/tk', { method: 'PUT', body: { name: 'TK', origins: ['https://tk.example'], jwks: { keys: [own] }, rate_limits: { token_per_minute: 33 } } });
    let r = await cli(['testkey', 'tk'], { EDGEWARD_KEY_DIR: dir });
    assert.equal(r.code, 0, r.err);
    let p = await record('/partners/tk');
    assert.deepEqual(p.jwks.keys.map((k) => k.kid)[0], own.kid, 'the partner\'s own key stays');
    assert.equal(p.jwks.keys.length, 2);
    assert.equal(p.rate_limits.token_per_minute, 33);
    // Again: the previous test key is replaced, not piled up.
    r = await cli(['testkey', 'tk'], { EDGEWARD_KEY_DIR: dir });
    assert.equal(r.code, 0, r.err);
    p = await record('/partners/tk');
    assert.equal(p.jwks.keys.length, 2);
    assert.equal(p.jwks.keys[0].kid, own.kid);

    // Keys from a jwks_uri are not swapped for a test key without --replace.
    await w.admin('/partners/tk', { method: 'PUT', body: { name: 'TK', origins: ['https://tk.example'], jwks_uri: 'https://tk.example/jwks.json' } });
    r = await cli(['testkey', 'tk'], { EDGEWARD_KEY_DIR: dir });
    assert.equal(r.code, 1);
    assert.match(r.err, /^error: partner tk takes its keys from https:\/\/tk\.example\/jwks\.json: nothing was changed/);
    assert.equal((await record('/partners/tk')).jwks_uri, 'https://tk.example/jwks.json');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('dev_seeding_is_rerunnable_and_keeps_what_exists', async () => {
  const { mkdtempSync, rmSync, readFileSync } = await import('node:fs');
  const os = await import('node:os');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'edgeward-seed-'));
  const env = { EDGEWARD_DEMO_ENV: path.join(dir, 'demo.env'), EDGEWARD_KEY_DIR: dir };
  const seed = async () => {
    const r = await run([path.join(ROOT, 'scripts', 'lib', 'seed-demo.sh')], { env, cmd: 'bash' });
    assert.equal(r.code, 0, r.err);
    return readFileSync(env.EDGEWARD_DEMO_ENV, 'utf8');
  };
  try {
    const first = await seed();
    const clientId = first.match(/^DEMO_CLIENT_ID=(.+)$/m)[1];
    // What a developer does between two starts.
    assert.equal((await cli(['testkey', 'demo'], env)).code, 0);
    assert.equal((await cli(['limits', 'demo', '--api-per-minute', '42'])).code, 0);
    assert.equal((await cli(['user', 'update', 'pupil', '--email', 'changed@demo-school.example'])).code, 0);
    const partner = await record('/partners/demo');
    const pupil = await record('/users/pupil');

    assert.equal(await seed(), first, 'the same demo client');
    assert.deepEqual(await record('/partners/demo'), partner, 'test key and limits kept');
    assert.deepEqual(await record('/users/pupil'), pupil, 'the user kept');
    assert.equal((await w.admin(`/clients/${clientId}`)).status, 200);

    // A demo client that is gone is made again.
    assert.equal((await w.admin(`/clients/${clientId}`, { method: 'DELETE' })).status, 204);
    const third = await seed();
    const newId = third.match(/^DEMO_CLIENT_ID=(.+)$/m)[1];
    assert.notEqual(newId, clientId);
    assert.equal((await w.admin(`/clients/${newId}`)).status, 200);
    assert.deepEqual(await record('/partners/demo'), partner);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
