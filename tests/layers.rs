//! The import direction of the source tree, checked by reading it (the edge compiles only for
//! wasm32, so this reads files rather than types).
//!
//! - `src/edge` is in layers: the router (`edge/mod.rs`) → `endpoints` and `consumers` → `flows`
//!   → `calls` → `rt`, and `objects` → `rt`. A module imports only from layers below its own; flows may use
//!   other flows and runtime helpers other runtime helpers, never in a circle. Endpoints do not
//!   import each other, calls do not import calls, and nothing imports an object class.
//! - No module of `src/edge` or of the pure crate (`crates/core/src`) is part of an import circle.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module a file is, as `::`-separated names under `base` (`mod.rs` names its folder).
fn module_of(base: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(base).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts.join("::")
}

/// The source without comments and without `#[cfg(test)]` modules (tests may reach anywhere).
fn code_of(source: &str) -> String {
    let mut out = String::new();
    let mut skipping_tests = false;
    for line in source.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") {
            skipping_tests = true;
        }
        if skipping_tests || trimmed.starts_with("//") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Every path that starts with `prefix` (`crate::edge::`), expanded through `{...}` groups:
/// `crate::edge::{rt::config, flows::{gate, bearer}}` gives `rt::config`, `flows::gate`, ...
fn paths_after(code: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find(prefix) {
        let before = rest[..at].chars().last();
        rest = &rest[at + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        tree(rest, String::new(), &mut out);
    }
    out
}

/// Reads one use-tree at the start of `s` into `out`, each path prefixed by `base`.
fn tree(s: &str, base: String, out: &mut Vec<String>) {
    let s = s.trim_start();
    if let Some(inner) = s.strip_prefix('{') {
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    tree(&inner[start..i], base.clone(), out);
                    return;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    tree(&inner[start..i], base.clone(), out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        return;
    }
    let name: String = s
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    if name.is_empty() || name == "self" {
        if !base.is_empty() {
            out.push(base);
        }
        return;
    }
    let path = if base.is_empty() {
        name.clone()
    } else {
        format!("{base}::{name}")
    };
    match s[name.len()..].strip_prefix("::") {
        Some(more) => tree(more, path, out),
        None => out.push(path),
    }
}

/// The module among `known` that `path` names or is inside of (the longest match).
fn target<'a>(path: &str, known: &'a BTreeSet<String>) -> Option<&'a String> {
    let parts: Vec<&str> = path.split("::").collect();
    (1..=parts.len())
        .rev()
        .map(|n| parts[..n].join("::"))
        .find_map(|candidate| known.get(&candidate))
}

type Graph = BTreeMap<String, BTreeSet<String>>;

/// The import graph of the modules under `base`; `prefixes` are how code names that tree
/// (`crate::edge::`, `crate::`).
fn graph(base: &Path, prefixes: &[&str]) -> Graph {
    let mut files = Vec::new();
    rust_files(base, &mut files);
    let modules: BTreeMap<String, String> = files
        .iter()
        .map(|f| {
            let m = module_of(base, f);
            (m, code_of(&fs::read_to_string(f).unwrap()))
        })
        .collect();
    let known: BTreeSet<String> = modules.keys().cloned().collect();
    let mut g = Graph::new();
    for (module, code) in &modules {
        let mut deps = BTreeSet::new();
        let mut paths: Vec<String> = Vec::new();
        for p in prefixes {
            paths.extend(paths_after(code, p));
        }
        // `super::x` in module `a::b` (a/b.rs or a/b/mod.rs) is `a::x`; `self::x` is `a::b::x`.
        let parent = module.rsplit_once("::").map_or("", |(p, _)| p);
        for p in paths_after(code, "super::") {
            paths.push(if parent.is_empty() {
                p
            } else {
                format!("{parent}::{p}")
            });
        }
        for p in paths_after(code, "self::") {
            paths.push(if module.is_empty() {
                p
            } else {
                format!("{module}::{p}")
            });
        }
        for p in paths {
            if let Some(t) = target(&p, &known) {
                if t != module && !module.starts_with(&format!("{t}::")) && !t.is_empty() {
                    deps.insert(t.clone());
                }
            }
        }
        g.insert(module.clone(), deps);
    }
    g
}

/// Import circles among the modules of `g`, each as the modules around it.
fn circles(g: &Graph) -> Vec<Vec<String>> {
    fn visit(
        m: &str,
        g: &Graph,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
        found: &mut Vec<Vec<String>>,
    ) {
        state.insert(m.to_owned(), 1);
        stack.push(m.to_owned());
        for d in g.get(m).into_iter().flatten() {
            match state.get(d.as_str()) {
                Some(1) => {
                    let at = stack.iter().position(|s| s == d).unwrap();
                    let mut circle = stack[at..].to_vec();
                    circle.push(d.clone());
                    found.push(circle);
                }
                None => visit(d, g, state, stack, found),
                _ => {}
            }
        }
        stack.pop();
        state.insert(m.to_owned(), 2);
    }
    let mut state = BTreeMap::new();
    let mut found = Vec::new();
    for m in g.keys() {
        if !state.contains_key(m.as_str()) {
            visit(m, g, &mut state, &mut Vec::new(), &mut found);
        }
    }
    found
}

fn edge_graph() -> Graph {
    graph(&Path::new(ROOT).join("src/edge"), &["crate::edge::"])
}

/// The layer of an edge module: its folder, or `router` for `src/edge/mod.rs`.
fn layer(module: &str) -> &str {
    match module.split("::").next() {
        Some("") | None => "router",
        Some(l) => l,
    }
}

/// May a module of layer `from` import one of layer `to`?
fn allowed(from: &str, to: &str) -> bool {
    matches!(
        (from, to),
        (
            "router",
            "endpoints" | "consumers" | "flows" | "calls" | "rt"
        ) | ("endpoints" | "consumers", "flows" | "calls" | "rt")
            | ("flows", "flows" | "calls" | "rt")
            | ("calls", "rt")
            | ("objects", "rt")
            | ("rt", "rt")
    )
}

#[test]
fn edge_imports_run_one_way_through_the_layers() {
    let g = edge_graph();
    let layers: BTreeSet<&str> = g.keys().map(|m| layer(m)).collect();
    assert_eq!(
        layers,
        BTreeSet::from([
            "router",
            "endpoints",
            "consumers",
            "flows",
            "calls",
            "objects",
            "rt"
        ]),
        "src/edge is in these layer folders and no others"
    );
    let mut wrong = Vec::new();
    for (from, deps) in &g {
        for to in deps {
            // A module may use its own submodules (a layer's mod.rs lists its modules; the token
            // endpoint has one submodule per grant), and they it.
            let listing = to.starts_with(&format!("{from}::"));
            if !listing && !allowed(layer(from), layer(to)) {
                wrong.push(format!("{from} -> {to}"));
            }
        }
    }
    assert!(
        g["endpoints::token::jwt_bearer"].contains("flows::user_grant"),
        "the graph is read: {g:?}"
    );
    assert_eq!(
        wrong,
        Vec::<String>::new(),
        "imports that run against the layers"
    );
}

#[test]
fn no_import_circle_in_the_edge_or_the_pure_crate() {
    let edge = edge_graph();
    let core = graph(&Path::new(ROOT).join("crates/core/src"), &["crate::"]);
    assert!(
        core["protocol::client"].contains("protocol::partner"),
        "the graph is read: {core:?}"
    );
    assert_eq!(
        circles(&edge),
        Vec::<Vec<String>>::new(),
        "import circles in src/edge"
    );
    assert_eq!(
        circles(&core),
        Vec::<Vec<String>>::new(),
        "import circles in crates/core/src"
    );
}

#[test]
fn layer_check_sees_a_path_through_groups_and_refuses_a_backward_import() {
    let code = "use crate::edge::{rt::config, flows::{gate, bearer::check}};\nlet x = crate::edge::calls::users::call(env);";
    let mut paths = paths_after(code, "crate::edge::");
    paths.sort();
    assert_eq!(
        paths,
        [
            "calls::users::call",
            "flows::bearer::check",
            "flows::gate",
            "rt::config"
        ]
    );
    assert!(!allowed("rt", "flows"));
    assert!(!allowed("objects", "calls"));
    assert!(!allowed("endpoints", "endpoints"));
    assert!(!allowed("calls", "calls"));
    let mut g = Graph::new();
    g.insert("a".into(), BTreeSet::from(["b".to_owned()]));
    g.insert("b".into(), BTreeSet::from(["a".to_owned()]));
    assert_eq!(
        circles(&g),
        vec![vec!["a".to_owned(), "b".to_owned(), "a".to_owned()]]
    );
}
