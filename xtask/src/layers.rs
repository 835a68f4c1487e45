//! `cargo xtask layers`: checks that every crate's modules import only down.
//!
//! Each `lib.rs` declares its top-level modules in groups (runs of `mod` lines separated by a blank line
//! or a comment), bottom layer first. A module may use modules of its own group or of earlier groups; a
//! `crate::x` path to a module of a later group is an upward import. Modules of one group must not form
//! an import loop either. Test modules (`#[cfg(test)]` to the end of a file) are not counted. Prints the
//! module graph of each crate and fails on any upward import or loop.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::cmd::{workspace_root, Result};

/// One crate's top-level modules, their layer groups and their imports.
struct CrateGraph {
    name: String,
    /// Module name → layer group index (0 = bottom).
    group: BTreeMap<String, usize>,
    /// Module name → the modules of this crate it uses.
    uses: BTreeMap<String, BTreeSet<String>>,
}

/// Checks every crate under `crates/` and `tests/`; prints each graph and the violations.
pub fn run() -> Result<()> {
    let root = workspace_root();
    let mut violations = Vec::new();
    for dir in ["crates", "tests"] {
        let mut crates: Vec<PathBuf> = read_dir(&root.join(dir))?
            .into_iter()
            .filter(|p| p.join("src/lib.rs").is_file())
            .collect();
        crates.sort();
        for krate in crates {
            let graph = crate_graph(&krate)?;
            println!("{}", graph.name);
            for (module, uses) in &graph.uses {
                let names: Vec<&str> = uses.iter().map(String::as_str).collect();
                println!(
                    "  {:<2} {module} -> {}",
                    graph.group[module],
                    if names.is_empty() {
                        "-".to_owned()
                    } else {
                        names.join(", ")
                    }
                );
            }
            violations.extend(check(&graph));
        }
    }
    if violations.is_empty() {
        println!("layers: no upward import, no loop");
        Ok(())
    } else {
        for v in &violations {
            eprintln!("layers: {v}");
        }
        Err(format!("{} layering violation(s)", violations.len()))
    }
}

fn check(graph: &CrateGraph) -> Vec<String> {
    let mut out = Vec::new();
    for (module, uses) in &graph.uses {
        for used in uses {
            if graph.group[used] > graph.group[module] {
                out.push(format!(
                    "{}: `{module}` (layer {}) imports `{used}` (layer {}), which is above it",
                    graph.name, graph.group[module], graph.group[used]
                ));
            }
        }
    }
    if let Some(cycle) = find_cycle(&graph.uses) {
        out.push(format!(
            "{}: import loop {}",
            graph.name,
            cycle.join(" -> ")
        ));
    }
    out
}

fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    // Depth-first search; `path` is the current stack, `done` the fully explored nodes.
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|node| visit(node, edges, &mut Vec::new(), &mut done))
}

fn crate_graph(krate: &Path) -> Result<CrateGraph> {
    let src = krate.join("src");
    let lib = read(&src.join("lib.rs"))?;
    let group = module_groups(&lib);
    let mut uses = BTreeMap::new();
    for module in group.keys() {
        let mut files = Vec::new();
        let file = src.join(format!("{module}.rs"));
        if file.is_file() {
            files.push(file);
        }
        let dir = src.join(module);
        if dir.is_dir() {
            rust_files(&dir, &mut files)?;
        }
        let mut used = BTreeSet::new();
        for file in files {
            let text = read(&file)?;
            for target in crate_paths(without_tests(&text)) {
                if target != *module && group.contains_key(&target) {
                    used.insert(target);
                }
            }
        }
        uses.insert(module.clone(), used);
    }
    let name = krate
        .strip_prefix(workspace_root())
        .unwrap_or(krate)
        .display()
        .to_string();
    Ok(CrateGraph { name, group, uses })
}

/// The top-level `mod` declarations of a `lib.rs`, numbered by group: any other line (blank, comment,
/// `use`) between two `mod` lines starts a new group. Modules under `#[cfg(doctest)]` or `#[cfg(test)]`
/// and inline modules are skipped.
fn module_groups(lib: &str) -> BTreeMap<String, usize> {
    let mut groups = BTreeMap::new();
    let mut group = 0;
    let mut in_group = false;
    let mut skip_next = false;
    for line in lib.lines() {
        let line = line.trim();
        if line.starts_with("#[cfg(doctest)]") || line.starts_with("#[cfg(test)]") {
            skip_next = true;
            continue;
        }
        if line.starts_with("#[") {
            continue;
        }
        let declared = line
            .strip_prefix("pub mod ")
            .or_else(|| line.strip_prefix("pub(crate) mod "))
            .or_else(|| line.strip_prefix("mod "))
            .and_then(|rest| rest.strip_suffix(';'));
        if let Some(name) = declared {
            if !std::mem::take(&mut skip_next) {
                groups.insert(name.trim().to_owned(), group);
                in_group = true;
            }
        } else {
            skip_next = false;
            if in_group {
                group += 1;
                in_group = false;
            }
        }
    }
    groups
}

/// The text before the first `#[cfg(test)]` (test modules sit at the end of a file by convention).
fn without_tests(text: &str) -> &str {
    text.find("#[cfg(test)]").map_or(text, |at| &text[..at])
}

/// The first segment of every `crate::` path, including each item of `use crate::{a, b::c}` groups.
fn crate_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            let mut depth = 0usize;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        rest = &group[i..];
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_alphanumeric() || c == '_') => {
                        out.push(identifier(&group[i..]));
                        item_start = false;
                    }
                    c if c.is_whitespace() => {}
                    _ => item_start = false,
                }
            }
            if rest.as_ptr() <= after.as_ptr() {
                break;
            }
        } else {
            out.push(identifier(after));
            rest = after;
        }
    }
    out
}

fn identifier(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for path in read_dir(dir)? {
        if path.is_dir() {
            rust_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::read_dir(dir)
        .map_err(|e| format!("reading {}: {e}", dir.display()))?
        .map(|entry| {
            entry
                .map(|e| e.path())
                .map_err(|e| format!("reading {}: {e}", dir.display()))
        })
        .collect()
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_separated_by_blank_lines_and_comments() {
        let lib = "//! docs\n\n// 1.\nmod a;\nmod b;\n\n// 2.\npub mod c;\n// 3.\nmod d;\n\n#[cfg(doctest)]\n#[doc = include_str!(\"../README.md\")]\nmod readme {}\n";
        let groups = module_groups(lib);
        assert_eq!(groups["a"], 0);
        assert_eq!(groups["b"], 0);
        assert_eq!(groups["c"], 1);
        assert_eq!(groups["d"], 2);
        assert!(!groups.contains_key("readme"));
    }

    #[test]
    fn crate_paths_include_grouped_uses() {
        let text = "use crate::a::X;\nuse crate::{b, c::{D, E}, d::F};\nfn f() { crate::e::g(); }";
        assert_eq!(crate_paths(text), ["a", "b", "c", "d", "e"]);
    }

    #[test]
    fn upward_imports_and_loops_are_found() {
        let graph = CrateGraph {
            name: "x".into(),
            group: [("low", 0), ("high", 1), ("peer", 1)]
                .into_iter()
                .map(|(m, g)| (m.to_owned(), g))
                .collect(),
            uses: [
                ("low", vec!["high"]),
                ("high", vec!["peer"]),
                ("peer", vec!["high"]),
            ]
            .into_iter()
            .map(|(m, u)| (m.to_owned(), u.into_iter().map(str::to_owned).collect()))
            .collect(),
        };
        let found = check(&graph);
        assert!(
            found
                .iter()
                .any(|v| v.contains("`low` (layer 0) imports `high`")),
            "{found:?}"
        );
        assert!(found.iter().any(|v| v.contains("import loop")), "{found:?}");
    }
}
