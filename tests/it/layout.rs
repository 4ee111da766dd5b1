//! The source tree's shape: no module imports a module that imports it back (directly or
//! through others), and no source file is over 500 lines.
//!
//! Imports are the `crate::`, `super::` and `self::` paths in a file outside comments and
//! its `mod tests`; each resolves to the longest module path that is a file. A crate's root
//! re-exporting its modules (`pub use x::Y` in `lib.rs`) is its facade, not an import.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::repo;

/// Most lines in one source file.
const MAX_LINES: usize = 500;

type Module = Vec<String>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The module a file under `src` defines: `a/b.rs` and `a/b/mod.rs` are `a::b`.
fn module_of(src: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Module = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("lib" | "main" | "mod")
    ) {
        parts.pop();
    }
    parts
}

/// The code of a file without comments and without its `mod tests`.
fn code(text: &str) -> String {
    let body = text.split("mod tests {").next().unwrap_or(text);
    body.lines()
        .map(|l| l.split_once("//").map_or(l, |(code, _)| code))
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The identifier path starting at `s`: `a::b::c` (stopping at `::{`, `::*` or anything else).
fn path_at(s: &str) -> (Vec<String>, &str) {
    let mut parts = Vec::new();
    let mut rest = s;
    loop {
        let end = rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len());
        if end == 0 {
            break;
        }
        parts.push(rest[..end].to_string());
        rest = &rest[end..];
        match rest.strip_prefix("::") {
            Some(r) if r.starts_with(is_ident) => rest = r,
            _ => break,
        }
    }
    (parts, rest)
}

/// The paths a group `{a, b::c, d::{e}}` names, relative to its prefix (top level only
/// descends one step per nested group).
fn group_paths(s: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut start = 1;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' | ',' if depth == 1 => {
                let (p, rest) = path_at(s[start..i].trim());
                if !p.is_empty() && p[0] != "self" {
                    out.push(p.clone());
                    if let Some(inner) = rest.strip_prefix("::") {
                        for q in group_paths(inner.trim()) {
                            out.push(p.iter().cloned().chain(q).collect());
                        }
                    }
                }
                start = i + 1;
                if c == '}' {
                    break;
                }
            }
            '}' => depth -= 1,
            _ => {}
        }
    }
    out
}

/// The modules `text` (the code of `module`) imports, among `modules`.
fn imports(module: &Module, text: &str, modules: &BTreeSet<Module>) -> BTreeSet<Module> {
    let mut out = BTreeSet::new();
    for head in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(at) = text[from..].find(head) {
            let i = from + at;
            from = i + head.len();
            if text[..i].ends_with(is_ident) {
                continue;
            }
            let base: Module = match head {
                "crate::" => vec![],
                "super::" => module[..module.len().saturating_sub(1)].to_vec(),
                _ => module.clone(),
            };
            let (path, rest) = path_at(&text[from..]);
            let mut named = vec![path.clone()];
            if let Some(g) = rest.strip_prefix("::").filter(|g| g.starts_with('{')) {
                named.extend(
                    group_paths(g)
                        .into_iter()
                        .map(|q| path.iter().cloned().chain(q).collect::<Vec<_>>()),
                );
            }
            for p in named {
                let full: Module = base.iter().cloned().chain(p).collect();
                let target = (0..=full.len())
                    .rev()
                    .map(|k| full[..k].to_vec())
                    .find(|m| modules.contains(m));
                if let Some(t) = target.filter(|t| t != module) {
                    out.insert(t);
                }
            }
        }
    }
    out
}

/// One cycle in `edges`, if there is any.
fn find_cycle(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Option<Vec<Module>> {
    fn visit(
        m: &Module,
        edges: &BTreeMap<Module, BTreeSet<Module>>,
        state: &mut BTreeMap<Module, u8>,
        stack: &mut Vec<Module>,
    ) -> Option<Vec<Module>> {
        state.insert(m.clone(), 1);
        stack.push(m.clone());
        for next in edges.get(m).into_iter().flatten() {
            match state.get(next).copied().unwrap_or(0) {
                1 => {
                    let at = stack.iter().position(|s| s == next).unwrap();
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(next, edges, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(m.clone(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for m in edges.keys() {
        if !state.contains_key(m) {
            let mut stack = Vec::new();
            if let Some(c) = visit(m, edges, &mut state, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

fn name(m: &Module) -> String {
    if m.is_empty() {
        "lib".into()
    } else {
        m.join("::")
    }
}

/// Each crate's import graph between its modules, the crate root's facade left out.
fn graphs() -> BTreeMap<String, BTreeMap<Module, BTreeSet<Module>>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(repo().join("crates")).unwrap() {
        let src = entry.unwrap().path().join("src");
        if !src.is_dir() {
            continue;
        }
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let modules: BTreeMap<Module, PathBuf> = files
            .iter()
            .map(|f| (module_of(&src, f), f.clone()))
            .collect();
        let names: BTreeSet<Module> = modules.keys().cloned().collect();
        let edges = modules
            .iter()
            .filter(|(m, _)| !m.is_empty())
            .map(|(m, f)| {
                let text = code(&std::fs::read_to_string(f).unwrap());
                (m.clone(), imports(m, &text, &names))
            })
            .collect();
        out.insert(src.parent().unwrap().display().to_string(), edges);
    }
    out
}

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let graphs = graphs();
    assert!(
        graphs.len() >= 10,
        "crates not found under {}",
        repo().display()
    );
    for (krate, edges) in &graphs {
        if let Some(cycle) = find_cycle(edges) {
            let names: Vec<String> = cycle.iter().map(name).collect();
            panic!("import circle in {krate}: {}", names.join(" -> "));
        }
    }
}

#[test]
fn the_cycle_finder_sees_a_circle_through_a_group_and_super() {
    let modules: BTreeSet<Module> = [vec![], vec!["a".into()], vec!["a".into(), "b".into()]]
        .into_iter()
        .collect();
    let a = vec!["a".to_string()];
    let b = vec!["a".to_string(), "b".to_string()];
    let from_a = imports(&a, "use crate::a::{b::Thing, self};\n", &modules);
    let from_b = imports(
        &b,
        &code("fn f() -> super::Other { todo!() } // crate::x\n"),
        &modules,
    );
    assert_eq!(from_a, [b.clone()].into_iter().collect());
    assert_eq!(from_b, [a.clone()].into_iter().collect());
    let edges = [(a.clone(), from_a), (b.clone(), from_b)]
        .into_iter()
        .collect();
    assert!(find_cycle(&edges).is_some());
    assert!(code("use crate::a; // crate::b\nmod tests { use crate::c; }").contains("crate::a"));
    assert!(!code("use crate::a; // crate::b\nmod tests { use crate::c; }").contains("crate::c"));
}

#[test]
fn no_source_file_is_over_500_lines() {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(repo().join("crates")).unwrap() {
        let src = entry.unwrap().path().join("src");
        if src.is_dir() {
            rust_files(&src, &mut files);
        }
    }
    assert!(files.len() > 50);
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).unwrap().lines().count();
            (n > MAX_LINES).then(|| format!("{} ({n} lines)", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "over {MAX_LINES} lines: {long:?}");
}
