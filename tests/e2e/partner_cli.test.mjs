// scripts/partner, the operator CLI: readable output, and a non-zero exit on every failure.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { startWorker, fetchRetryingIdempotent, ROOT } from './harness.mjs';
import { CookieJar, formFields } from './oauth.mjs';

let w;
before(async () => {
  w = await startWorker();
});
after(() => w?.stop());

function cli(args, env = {}) {
  // Async spawn would be needed for a long command; these are short and the Worker runs in
  // another process, so spawnSync is fine.
  const r = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'partner'), ...args], {
    env: { PATH: process.env.PATH, EDGEWARD_URL: w.url, ADMIN_TOKEN: w.adminToken, ...env },
    encoding: 'utf8',
    timeout: 20_000,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('partner_cli_add_list_show_suspend_activate_remove', async () => {
  let r = cli(['add', 'cli-demo', '--name', 'CLI Demo', '--origin', 'https://App.cli.example', '--origin', 'http://localhost:5173']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^cli-demo {2}ACTIVE {2}CLI Demo$/m);
  assert.match(r.out, /^ {4}https:\/\/app\.cli\.example$/m);

  r = cli(['list']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /cli-demo {2}ACTIVE/);

  // International names are sent in their punycode form (the admin API takes only that).
  r = cli(['add', 'cli-idn', '--name', 'IDN', '--origin', 'https://bücher.cli.example']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^ {4}https:\/\/xn--bcher-kva\.cli\.example$/m);

  r = cli(['suspend', 'cli-demo']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /cli-demo {2}SUSPENDED/);
  assert.equal((await (await w.admin('/partners/cli-demo')).json()).status, 'suspended');

  // Suspending keeps everything else, keys included.
  await w.admin('/partners/cli-demo', {
    method: 'PUT',
    body: { name: 'CLI Demo', origins: ['https://app.cli.example'], status: 'suspended', jwks_uri: 'https://app.cli.example/jwks.json' },
  });
  r = cli(['activate', 'cli-demo']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /cli-demo {2}ACTIVE/);

  assert.equal((await (await w.admin('/partners/cli-demo')).json()).jwks_uri, 'https://app.cli.example/jwks.json');
  r = cli(['show', 'cli-demo']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /keys: https:\/\/app\.cli\.example\/jwks\.json/);

  // Rate limits: set some, keep the rest; suspending keeps them too.
  r = cli(['limits', 'cli-demo', '--api-per-minute', '120', '--token-per-client-per-minute', '9']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /limits\/min: api 120 \(per client 3000\), token 600 \(per client 9\)/);
  r = cli(['limits', 'cli-demo', '--api-per-minute', 'many']);
  assert.equal(r.code, 2);
  assert.match(r.err, /whole number/);
  r = cli(['suspend', 'cli-demo']);
  assert.equal(r.code, 0, r.err);
  assert.deepEqual((await (await w.admin('/partners/cli-demo')).json()).rate_limits, {
    api_per_minute: 120,
    api_per_client_per_minute: 3000,
    token_per_minute: 600,
    token_per_client_per_minute: 9,
  });

  r = cli(['remove', 'cli-demo']);
  assert.equal(r.code, 0, r.err);
  assert.equal((await w.admin('/partners/cli-demo')).status, 404);
});

test('partner_cli_failures_exit_non_zero_with_the_reason', () => {
  let r = cli(['show', 'nobody']);
  assert.equal(r.code, 1);
  assert.match(r.err, /404.*not_found/);

  r = cli(['add', 'bad', '--name', 'Bad', '--origin', 'http://bad.example']);
  assert.equal(r.code, 1);
  assert.match(r.err, /400.*origins\[0\]/);

  r = cli(['list'], { ADMIN_TOKEN: 'x'.repeat(40) });
  assert.equal(r.code, 1);
  assert.match(r.err, /401/);

  r = cli(['list'], { EDGEWARD_URL: 'http://127.0.0.1:9' });
  assert.equal(r.code, 1);
  assert.match(r.err, /cannot reach/);

  r = cli(['add', 'x', '--origin', 'https://x.example']);
  assert.equal(r.code, 2);
  assert.match(r.err, /--name/);

  r = cli(['frobnicate']);
  assert.equal(r.code, 2);
});

test('partner_cli_client_and_user_commands', async () => {
  assert.equal(cli(['add', 'cliapp', '--name', 'CLI App', '--origin', 'https://cliapp.example']).code, 0);
  let r = cli([
    'client', 'add', 'cliapp', '--name', 'CLI Web',
    '--redirect-uri', 'https://cliapp.example/cb', '--scope', 'openid', '--scope', 'profile',
  ]);
  assert.equal(r.code, 0, r.err);
  const clientId = r.out.match(/^([A-Za-z0-9_-]{22}) {2}CLI Web/m)?.[1];
  assert.ok(clientId, r.out);
  assert.match(r.out, /client_secret: [A-Za-z0-9_-]{43}/);

  r = cli(['client', 'show', clientId]);
  assert.equal(r.code, 0, r.err);
  assert.doesNotMatch(r.out, /client_secret:/);
  assert.match(r.out, /redirect: https:\/\/cliapp\.example\/cb/);

  r = cli(['client', 'list', 'cliapp']);
  assert.match(r.out, new RegExp(clientId));

  r = cli(['client', 'add', 'cliapp', '--name', 'Bad', '--redirect-uri', 'https://evil.example/cb']);
  assert.equal(r.code, 1);
  assert.match(r.err, /400.*redirect_uris\[0\]/);

  r = cli(['client', 'remove', clientId]);
  assert.equal(r.code, 0, r.err);

  const add = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'partner'), 'user', 'add', 'carol', '--name', 'Carol', '--role', 'teacher', '--password-stdin'], {
    env: { PATH: process.env.PATH, EDGEWARD_URL: w.url, ADMIN_TOKEN: w.adminToken },
    input: 'a long enough password\n',
    encoding: 'utf8',
  });
  assert.equal(add.status, 0, add.stderr);
  assert.match(add.stdout, /^carol {2}Carol$/m);
  assert.match(add.stdout, /roles: teacher/);

  r = cli(['user', 'show', 'carol']);
  assert.equal(r.code, 0, r.err);
  r = cli(['user', 'remove', 'carol']);
  assert.equal(r.code, 0, r.err);
  r = cli(['user', 'show', 'carol']);
  assert.equal(r.code, 1);
  assert.match(r.err, /404/);
});

test('partner_cli_test_key_signs_link_requests_and_login_assertions', async () => {
  const { mkdtempSync, rmSync } = await import('node:fs');
  const os = await import('node:os');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'edgeward-keys-'));
  try {
    assert.equal(cli(['add', 'keyed', '--name', 'Keyed', '--origin', 'https://keyed.example']).code, 0);
    let r = cli(['testkey', 'keyed'], { EDGEWARD_KEY_DIR: dir });
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /"d":/, 'prints the private test key');
    const partner = await (await w.admin('/partners/keyed')).json();
    assert.equal(partner.jwks.keys.length, 1);
    assert.equal(partner.jwks.keys[0].d, undefined, 'only the public key is stored');

    r = cli(['link-request', 'keyed', '--sub', 'keyed-user-1', '--state', 's9'], { EDGEWARD_KEY_DIR: dir });
    assert.equal(r.code, 0, r.err);
    const linkUrl = r.out.trim();
    assert.match(linkUrl, /\/link\?request=/);
    const res = await fetchRetryingIdempotent(linkUrl, { redirect: 'manual' });
    assert.equal(res.status, 302, 'a valid request: on to the login page');
    assert.match(res.headers.get('location'), /^\/login\?return_to=/);

    r = cli(['login-assertion', 'keyed', '--sub', 'keyed-user-1'], { EDGEWARD_KEY_DIR: dir });
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
    r = cli(['link-confirm', 'keyed', '--request', request, '--code', code], { EDGEWARD_KEY_DIR: dir });
    assert.equal(r.code, 0, r.err);
    assert.equal(JSON.parse(r.out).partner_sub, 'keyed-user-1');
    assert.ok(JSON.parse(r.out).link_token);
    r = cli(['link-confirm', 'keyed', '--request', request, '--code', code], { EDGEWARD_KEY_DIR: dir });
    assert.equal(r.code, 1, 'a link code is used once');
    assert.match(r.err, /invalid_grant/);
    // --form: the form a partner's page posts (from its own origin, it signs in at once).
    r = cli(['login-assertion', 'keyed', '--sub', 'keyed-user-1', '--form'], { EDGEWARD_KEY_DIR: dir });
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

    r = cli(['link-request', 'keyed', '--sub', 'x'], { EDGEWARD_KEY_DIR: path.join(dir, 'missing') });
    assert.equal(r.code, 2, 'no test key yet');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
