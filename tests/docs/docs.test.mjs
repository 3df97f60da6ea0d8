// The documents name tests, files and functions as evidence: each name must still exist, so a
// rename or a removal that leaves a document behind fails here, not in a reader's hands.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const DOCS = ['README.md', 'ARCHITECTURE.md', 'SECURITY.md', ...mdUnder('docs')];
const SOURCES = ['src', 'crates', 'tests', 'scripts', 'benches', 'examples', 'fuzz/fuzz_targets'];

function mdUnder(dir) {
  const full = path.join(ROOT, dir);
  return existsSync(full) ? readdirSync(full).filter((f) => f.endsWith('.md')).map((f) => path.join(dir, f)) : [];
}

function filesUnder(dir, out = []) {
  const full = path.join(ROOT, dir);
  if (!existsSync(full)) return out;
  for (const name of readdirSync(full)) {
    if (['node_modules', 'target', 'corpus', 'artifacts'].includes(name)) continue;
    const rel = path.join(dir, name);
    if (statSync(path.join(ROOT, rel)).isDirectory()) filesUnder(rel, out);
    else out.push(rel);
  }
  return out;
}

// This test's own invented names must not count as existing.
const SELF = path.relative(ROOT, fileURLToPath(import.meta.url));
const files = SOURCES.flatMap((d) => filesUnder(d)).filter((f) => f !== SELF);
const extra = ['wrangler.toml', 'Cargo.toml', 'package.json', 'docs/openapi.json', 'clippy.toml', 'crates/core/Cargo.toml'].filter((f) => existsSync(path.join(ROOT, f)));
const corpus = [...files, ...extra].map((f) => readFileSync(path.join(ROOT, f), 'utf8')).join('\n');
const words = new Set(corpus.match(/[A-Za-z0-9_]+/g));
const basenames = new Set(files.map((f) => path.basename(f)));
// Files are also named without their extension (`faults`, `bad_input` for their test files).
for (const f of files) words.add(path.basename(f).split('.')[0]);

/** Every `code span` of a document, with its line number. */
function spans(doc) {
  const out = [];
  readFileSync(path.join(ROOT, doc), 'utf8').split('\n').forEach((line, i) => {
    for (const m of line.matchAll(/`([^`\n]+)`/g)) out.push({ text: m[1], line: i + 1 });
  });
  return out;
}

function fileExists(name) {
  if (existsSync(path.join(ROOT, name))) return true;
  if (existsSync(path.join(ROOT, 'src', name))) return true;
  if (existsSync(path.join(ROOT, 'crates', 'core', 'src', name))) return true;
  if (existsSync(path.join(ROOT, 'tests', 'e2e', name))) return true;
  // A bare file name (`linking.test.mjs`, `users.rs`) names a file somewhere in the tree.
  return !name.includes('/') && basenames.has(name);
}

// A file: code by its extension, anything else only as a path (`docs/openapi.json`); a bare
// `keys.json` is an example file name, `/x.json` a URL path.
const FILE = /^[\w.-][\w./-]*\.(rs|mjs|js|sh)$|^[\w.-]+\/[\w./-]+\.(md|json|toml)$/;
// What a build or a run makes (git-ignored): not there in a clean checkout, by design.
const GENERATED = /^(build|target|node_modules|\.wrangler|fuzz\/(corpus|artifacts|target))\//;
// snake_case names (tests, functions, tables, fields) with at least one underscore.
const SNAKE = /^[a-z][a-z0-9]*(_[a-z0-9]+)+$/;
// `module::name`, `Type::method`, `name()`.
const PATHLIKE = /^[A-Za-z_][\w]*(::[A-Za-z_][\w]*)+$/;

test('documents_name_only_files_tests_and_functions_that_exist', () => {
  const missing = [];
  for (const doc of DOCS) {
    for (const { text, line } of spans(doc)) {
      // A span may list a file and names: `edge/link.rs` `partner_jwt` are separate spans already;
      // one span may also be "file name" pairs such as `edge/users.rs` `Put`.
      for (const token of text.split(/[\s,]+/).filter(Boolean)) {
        const t = token.replace(/\(\)$/, '');
        if (FILE.test(t) && !t.startsWith('.') && !t.includes('*') && !GENERATED.test(t)) {
          if (!fileExists(t)) missing.push(`${doc}:${line}: file ${t}`);
        } else if (SNAKE.test(t)) {
          if (!words.has(t)) missing.push(`${doc}:${line}: name ${t}`);
        } else if (PATHLIKE.test(t)) {
          const last = t.split('::').at(-1);
          if (!words.has(last)) missing.push(`${doc}:${line}: name ${t}`);
        }
      }
    }
  }
  assert.deepEqual(missing, [], `documents name what no longer exists:\n${missing.join('\n')}`);
});

test('documents_docs_test_sees_names_and_files_that_exist_and_misses_those_that_do_not', () => {
  // The checker itself: known names pass, invented ones do not.
  assert.ok(words.has('link_code_redeems_once_for_its_request_and_account_only'));
  assert.ok(fileExists('protocol/link.rs') && fileExists('linking.test.mjs'));
  assert.ok(!words.has('a_test_that_was_never_written_anywhere'));
  assert.ok(!fileExists('protocol/nothing_here.rs'));
});
