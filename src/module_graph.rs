//! The crate's top-level modules must not import each other in a cycle
//! (DESIGN.md: configuration is the composition root; leaf modules own their
//! settings types and import nothing above them).
//!
//! Reads every `.rs` file under `src/`, maps it to its top-level module
//! (`src/config.rs` → `config`, `src/vault/named.rs` → `vault`; `lib.rs` and
//! `main.rs` are skipped), and takes an edge A → B for every `crate::B` in A's
//! code: `use crate::b::...`, `crate::b::f()` in expressions, and each member of
//! `use crate::{a, b}`. Comments and string literals do not count.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module → imported module → the files that import it.
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

#[test]
fn top_level_modules_import_each_other_without_cycles() {
    let graph = crate_graph();
    assert!(
        graph.contains_key("config") && graph.contains_key("store"),
        "the graph was not read: {graph:?}"
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "import cycle between top-level modules:\n{}",
            describe(&graph, &cycle)
        );
    }
}

/// The import graph of the crate's top-level modules.
fn crate_graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph = Graph::new();
    for file in files {
        let Some(module) = top_level_module(&src, &file) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("readable source file");
        let shown = file
            .strip_prefix(&src)
            .unwrap_or(&file)
            .display()
            .to_string();
        let edges = graph.entry(module.clone()).or_default();
        for target in crate_references(&code_only(&text)) {
            if target != module {
                edges
                    .entry(target)
                    .or_default()
                    .insert(format!("src/{shown}"));
            }
        }
    }
    graph
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).expect("readable source directory");
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/config.rs` → `config`, `src/vault/named.rs` → `vault`; `None` for the crate roots.
fn top_level_module(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    if relative.components().count() > 1 {
        return (first != "bin").then(|| first.to_string());
    }
    let stem = first.strip_suffix(".rs")?;
    (stem != "lib" && stem != "main").then(|| stem.to_string())
}

/// `text` with comments, string literals and character literals blanked out.
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let at = |i: usize| chars.get(i).copied();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '/' && at(i + 1) == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && at(i + 1) == Some('*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && at(i + 1) == Some('/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if let Some(hashes) = raw_string_start(&chars, i) {
            // r"..." or r#"..."#: ends at a quote followed by as many hashes.
            let closing: Vec<char> = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            i += hashes + 2;
            while i < chars.len() && !chars[i..].starts_with(&closing) {
                i += 1;
            }
            i += closing.len();
            out.push_str("\"\"");
        } else if c == '\'' && at(i + 1) == Some('\\') {
            // An escaped character literal: '\n', '\'', '\u{1F600}'.
            i += 3;
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else if c == '\'' && at(i + 2) == Some('\'') {
            // A plain character literal such as '"'; otherwise `'` starts a lifetime.
            i += 3;
            out.push_str("' '");
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// At `r"` or `r#..#"` that is not the end of an identifier (`br"` counts):
/// the number of hashes.
fn raw_string_start(chars: &[char], i: usize) -> Option<usize> {
    if chars[i] != 'r' {
        return None;
    }
    let ident = |j: usize| chars[j].is_alphanumeric() || chars[j] == '_';
    let starts_token = match i {
        0 => true,
        1 => !ident(0) || chars[0] == 'b',
        _ => !ident(i - 1) || (chars[i - 1] == 'b' && !ident(i - 2)),
    };
    let hashes = chars[i + 1..].iter().take_while(|c| **c == '#').count();
    (starts_token && chars.get(i + 1 + hashes) == Some(&'"')).then_some(hashes)
}

/// The top-level modules named by `crate::` paths in `code`.
fn crate_references(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (pos, _) in code.match_indices("crate::") {
        let before = code[..pos].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let after = code[pos + "crate::".len()..].trim_start();
        match after.strip_prefix('{') {
            Some(group) => found.extend(group_members(group).map(leading_ident)),
            None => {
                found.insert(leading_ident(after));
            }
        }
    }
    found.retain(|name| !name.is_empty() && name != "self");
    found
}

/// The items of a `{a::b, c::{d, e}}` group (text after the opening brace), split at top-level commas.
fn group_members(group: &str) -> impl Iterator<Item = &str> {
    let mut depth = 0;
    let mut end = group.len();
    let mut starts = vec![0];
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                end = i;
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => starts.push(i + 1),
            _ => {}
        }
    }
    let mut bounds: Vec<(usize, usize)> = starts.windows(2).map(|w| (w[0], w[1] - 1)).collect();
    bounds.push((*starts.last().unwrap_or(&0), end));
    bounds.into_iter().map(move |(a, b)| group[a..b].trim())
}

fn leading_ident(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// One cycle (first module repeated at the end), if the graph has any.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        Open,
        Done,
    }
    fn visit<'a>(
        graph: &'a Graph,
        node: &'a str,
        state: &mut BTreeMap<&'a str, State>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match state.get(node) {
            Some(State::Done) => return None,
            Some(State::Open) => {
                let start = path.iter().position(|n| *n == node).unwrap_or(0);
                let mut cycle: Vec<String> = path[start..].iter().map(|n| n.to_string()).collect();
                cycle.push(node.to_string());
                return Some(cycle);
            }
            None => {}
        }
        state.insert(node, State::Open);
        path.push(node);
        for next in graph.get(node).into_iter().flat_map(BTreeMap::keys) {
            if let Some(cycle) = visit(graph, next, state, path) {
                return Some(cycle);
            }
        }
        path.pop();
        state.insert(node, State::Done);
        None
    }
    let mut state = BTreeMap::new();
    graph
        .keys()
        .find_map(|node| visit(graph, node, &mut state, &mut Vec::new()))
}

/// "a → b (src/a.rs)" for each edge of the cycle.
fn describe(graph: &Graph, cycle: &[String]) -> String {
    cycle
        .windows(2)
        .map(|pair| {
            let files = graph
                .get(&pair[0])
                .and_then(|edges| edges.get(&pair[1]))
                .map(|files| files.iter().cloned().collect::<Vec<_>>().join(", "))
                .unwrap_or_default();
            format!("  {} → {} ({files})", pair[0], pair[1])
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn files_map_to_their_top_level_module() {
    let src = Path::new("/x/src");
    let cases = [
        ("/x/src/config.rs", Some("config")),
        ("/x/src/vault/named.rs", Some("vault")),
        ("/x/src/vault/mod.rs", Some("vault")),
        ("/x/src/lib.rs", None),
        ("/x/src/main.rs", None),
    ];
    for (file, expected) in cases {
        let got = top_level_module(src, Path::new(file));
        assert_eq!(got.as_deref(), expected, "{file}");
    }
}

#[test]
fn references_come_from_code_not_comments_or_strings() {
    let code = r##"
        //! Uses crate::doc_comment.
        use crate::{api::{self, AppState}, auth::limiter::FailureLimiter};
        use crate::store;
        /* crate::block /* nested crate::inner */ still crate::comment */
        let s = "crate::in_string \" crate::escaped";
        let r = r#"crate::raw " crate::raw_too"#;
        let q = '"'; let x = crate::vault::names::valid_project(&p);
        fn f<'a>(x: &'a str) -> &'a str { crate::telemetry::id(x) }
        let mycrate::not_this = 1; pub(crate) fn g() {}
    "##;
    let found = crate_references(&code_only(code));
    let expected = ["api", "auth", "store", "telemetry", "vault"];
    assert_eq!(found, expected.iter().map(|s| s.to_string()).collect());
}

#[test]
fn a_cycle_is_found_and_named_and_a_dag_has_none() {
    let graph = |edges: &[(&str, &str)]| {
        let mut g = Graph::new();
        for (a, b) in edges {
            g.entry(a.to_string())
                .or_default()
                .entry(b.to_string())
                .or_default()
                .insert(format!("src/{a}.rs"));
        }
        g
    };
    let dag = graph(&[
        ("startup", "config"),
        ("config", "store"),
        ("startup", "store"),
    ]);
    assert_eq!(find_cycle(&dag), None);
    let cyclic = graph(&[
        ("startup", "config"),
        ("config", "store"),
        ("store", "error"),
        ("error", "store"),
    ]);
    let cycle = find_cycle(&cyclic).expect("a cycle");
    assert_eq!(cycle, ["store", "error", "store"]);
    let shown = describe(&cyclic, &cycle);
    assert!(shown.contains("error → store (src/error.rs)"), "{shown}");
    assert!(shown.contains("store → error (src/store.rs)"), "{shown}");
}
