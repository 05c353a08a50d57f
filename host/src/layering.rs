//! The host's layering, checked: data flows one way (cli / daemon -> action engine ->
//! engine -> capabilities -> storage), so the top-level modules must form no cycle; the WIT
//! bindings are a leaf; clap stays at the edge (cli/). A test, so a change that breaks the
//! shape fails CI instead of slowly eroding it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module -> the top-level modules its non-test code names (`crate::x`).
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let top: BTreeSet<String> = std::fs::read_dir(src)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .map(|n| n.trim_end_matches(".rs").to_string())
        .filter(|n| n != "lib" && n != "main")
        .collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for m in &top {
        for file in rust_files(&src.join(m), &src.join(format!("{m}.rs"))) {
            let text = std::fs::read_to_string(&file).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            for (i, _) in code.match_indices("crate::") {
                let name: String = code[i + 7..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if top.contains(&name) && &name != m {
                    edges.entry(m.clone()).or_default().insert(name);
                }
            }
        }
        edges.entry(m.clone()).or_default();
    }
    edges
}

fn rust_files(dir: &Path, file: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if file.is_file() {
        out.push(file.to_path_buf());
    }
    if dir.is_dir() {
        for e in walk(dir) {
            if e.extension().is_some_and(|x| x == "rs") {
                out.push(e);
            }
        }
    }
    out
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A cycle through `start`, if any (depth-first).
fn cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == n) {
            let mut c = path[at..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for m in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|n| visit(n, edges, &mut Vec::new(), &mut done))
}

fn src() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn top_level_modules_form_no_cycle() {
    let g = graph(&src());
    assert!(g.len() > 10, "the module graph was not read: {g:?}");
    if let Some(c) = cycle(&g) {
        panic!("dependency cycle between host modules: {}", c.join(" -> "));
    }
}

#[test]
fn the_wit_bindings_are_a_leaf_and_capabilities_sit_below_the_engine() {
    let g = graph(&src());
    assert_eq!(
        g["wit"],
        BTreeSet::new(),
        "wit.rs must import nothing of the host"
    );
    for below in ["cap", "storage"] {
        for above in ["engine", "action", "k8s", "cli", "harness"] {
            assert!(!g[below].contains(above), "{below} depends on {above}");
        }
    }
}

#[test]
fn clap_stays_in_the_cli() {
    for f in walk(&src()) {
        let text = std::fs::read_to_string(&f).unwrap();
        let rel = f.strip_prefix(src()).unwrap();
        if !rel.starts_with("cli") && rel != Path::new("layering.rs") {
            assert!(!text.contains("clap::"), "{} uses clap", rel.display());
        }
    }
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let g: BTreeMap<String, BTreeSet<String>> = [("a", "b"), ("b", "c"), ("c", "a")]
        .into_iter()
        .map(|(x, y)| (x.to_string(), BTreeSet::from([y.to_string()])))
        .collect();
    assert_eq!(cycle(&g).unwrap(), ["a", "b", "c", "a"]);
}
