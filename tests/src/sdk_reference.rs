//! The plugin SDK's API reference, generated from its source (plugins/sdk/src): every public
//! function, method, type and trait a plugin uses, with its signature and the first
//! paragraph of its doc comment (or of the `//` comment right above it, where a doc comment
//! would leak elsewhere). docs/plugin-authoring.md holds a copy that a test keeps equal to
//! this, so the reference cannot drift from the code; an undocumented public item is an error.

use std::path::Path;

/// The files, the path a plugin names their items by, and the heading they go under.
const FILES: &[(&str, &str, &str)] = &[
    ("action.rs", "sdk", "Actions and the plugin export"),
    ("cmd.rs", "sdk", "Commands"),
    ("scratch.rs", "sdk", "Scratch files"),
    ("lib.rs", "sdk", "Helpers"),
    ("context.rs", "sdk", "Errors and checkpoints"),
    ("log.rs", "sdk::log", "Logs and progress"),
    ("io.rs", "sdk::io", "std::io adapters"),
    ("net.rs", "sdk::net", "Network (TCP)"),
];

pub struct Entry {
    pub path: String,
    pub signature: String,
    pub doc: String,
}

/// The reference as markdown, or the public items that have no doc comment.
pub fn render(sdk_src: &Path) -> Result<String, Vec<String>> {
    let mut out = String::new();
    let mut undocumented = Vec::new();
    for (file, module, heading) in FILES {
        let text = std::fs::read_to_string(sdk_src.join(file)).unwrap();
        let entries = parse(&text, module);
        out.push_str(&format!("\n#### {heading}\n\n"));
        for e in entries {
            if e.doc.is_empty() {
                undocumented.push(format!("{file}: {}", e.path));
                continue;
            }
            out.push_str(&format!(
                "- `{}` — `{}`  \n  {}\n",
                e.path, e.signature, e.doc
            ));
        }
    }
    if undocumented.is_empty() {
        Ok(out)
    } else {
        Err(undocumented)
    }
}

/// Public items of one file. Line-based (the SDK is rustfmt-formatted): items under
/// `#[doc(hidden)]`, test modules and trait impls are left out.
pub fn parse(text: &str, module: &str) -> Vec<Entry> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut doc: Vec<String> = Vec::new();
    let mut plain: Vec<String> = Vec::new();
    let mut hidden = false;
    // (the depth its `{` opened at, what it contributes to paths, whether it is skipped)
    let mut scopes: Vec<(usize, Option<String>, bool)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < lines.len() {
        let raw = lines[i];
        let line = raw.trim();
        let skipping = scopes.iter().any(|s| s.2);
        if let Some(d) = line.strip_prefix("///") {
            doc.push(d.trim().to_string());
        } else if let Some(d) = line
            .strip_prefix("//")
            .filter(|d| !d.starts_with(['/', '!']) && !doc_seen(&doc))
        {
            // A plain comment documents an item whose doc comment would leak elsewhere (a
            // params type's doc comment becomes its schema's description).
            plain.push(d.trim().to_string());
        } else if line == "#[doc(hidden)]" || line == "#[cfg(test)]" {
            hidden = true;
        } else if line.starts_with("#[") || line.starts_with("//") || line.is_empty() {
            // Attributes and comments between a doc comment and its item keep both.
            if line.is_empty() {
                doc.clear();
                plain.clear();
            }
        } else {
            let opens_scope = |name: Option<String>, skip: bool, scopes: &mut Vec<_>| {
                scopes.push((depth, name, skip));
            };
            let item_doc = if doc.is_empty() {
                first_paragraph(&plain)
            } else {
                first_paragraph(&doc)
            };
            let is_item = line.starts_with("pub ") || line.starts_with("impl");
            if is_item && !skipping && !hidden {
                let prefix: Vec<String> = std::iter::once(module.to_string())
                    .chain(scopes.iter().filter_map(|s| s.1.clone()))
                    .collect();
                let path = |name: &str| format!("{}::{name}", prefix.join("::"));
                if let Some(rest) = line.strip_prefix("pub fn ") {
                    let name = rest.split(['(', '<']).next().unwrap_or("");
                    out.push(Entry {
                        path: path(name),
                        signature: signature(&lines, i),
                        doc: item_doc,
                    });
                } else if let Some(rest) = strip_kind(line) {
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    let sig = line.trim_end_matches(['{', ';']).trim().to_string();
                    out.push(Entry {
                        path: path(&name),
                        signature: sig.trim_start_matches("pub ").to_string(),
                        doc: item_doc,
                    });
                }
            }
            // Scopes: inherent impls name their type; modules their module; trait impls and
            // hidden or test blocks are skipped.
            if line.ends_with('{') && !line.starts_with("pub fn") && !line.starts_with("fn ") {
                let (name, skip) = if let Some(rest) = line.strip_prefix("impl") {
                    if rest.contains(" for ") {
                        (None, true)
                    } else {
                        let ty = rest
                            .trim_start_matches(|c| c != ' ')
                            .trim()
                            .split(['<', ' ', '{'])
                            .next()
                            .unwrap_or("")
                            .to_string();
                        (Some(ty), hidden)
                    }
                } else if let Some(rest) = line.strip_prefix("pub mod ") {
                    (Some(rest.trim_end_matches('{').trim().to_string()), hidden)
                } else if line.starts_with("mod ") || line.starts_with("macro_rules!") {
                    (None, true)
                } else {
                    (None, hidden || skipping)
                };
                opens_scope(name, skip, &mut scopes);
            }
            doc.clear();
            plain.clear();
            hidden = false;
        }
        depth += raw.matches('{').count();
        depth = depth.saturating_sub(raw.matches('}').count());
        while scopes.last().is_some_and(|s| depth <= s.0) {
            scopes.pop();
        }
        i += 1;
    }
    out
}

fn strip_kind(line: &str) -> Option<&str> {
    [
        "pub struct ",
        "pub trait ",
        "pub enum ",
        "pub type ",
        "pub const ",
    ]
    .iter()
    .find_map(|k| line.strip_prefix(k))
}

/// The signature of the `pub fn` at line `i`: up to its body's `{` (or `;`), on one line.
fn signature(lines: &[&str], i: usize) -> String {
    let mut sig = String::new();
    for l in &lines[i..] {
        let l = l.trim();
        if let Some(at) = l.find('{') {
            sig.push_str(&l[..at]);
            break;
        }
        sig.push_str(l);
        sig.push(' ');
        if l.ends_with(';') {
            break;
        }
    }
    let sig = sig
        .trim()
        .trim_end_matches(';')
        .trim_start_matches("pub ")
        .replace("( ", "(")
        .replace(", )", ")")
        .replace(",)", ")");
    let sig = sig.split_whitespace().collect::<Vec<_>>().join(" ");
    sig.trim_end_matches(',').to_string()
}

fn doc_seen(doc: &[String]) -> bool {
    !doc.is_empty()
}

fn first_paragraph(doc: &[String]) -> String {
    doc.iter()
        .take_while(|l| !l.is_empty())
        .cloned()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_methods_and_modules_get_their_paths() {
        let text = r#"
/// A thing.
pub struct Thing;

impl Thing {
    /// Make one.
    pub fn new(a: u32,
        b: u32) -> Thing {
        Thing
    }
}

impl Clone for Thing {
    fn clone(&self) -> Thing { Thing }
}

#[doc(hidden)]
pub mod internal {
    pub fn hidden() {}
}

pub mod checkpoint {
    /// Save it.
    pub fn save() {}
}

pub fn undocumented() {}
"#;
        let e = parse(text, "sdk");
        let got: Vec<(&str, &str, &str)> = e
            .iter()
            .map(|e| (e.path.as_str(), e.signature.as_str(), e.doc.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("sdk::Thing", "struct Thing", "A thing."),
                (
                    "sdk::Thing::new",
                    "fn new(a: u32, b: u32) -> Thing",
                    "Make one."
                ),
                ("sdk::checkpoint::save", "fn save()", "Save it."),
                ("sdk::undocumented", "fn undocumented()", ""),
            ]
        );
    }
}
