//! Tidy checks on the layout: wirelab's crates depend on one another in one direction only (the layers the README lists), every source file opens with a `//!` line saying what it owns, and the README's code map names every crate.

use std::path::{Path, PathBuf};

/// The crates in layer order: a crate may depend (outside its tests) only on crates of a
/// lower layer. `backends` and `plugin` sit beside `wire`: they need only the stack trait.
const LAYERS: &[(&str, &str, u32)] = &[
    ("wirelab-stack", "stack", 0),
    ("wirelab-wire", "crates/wire", 1),
    ("wirelab-backends", "crates/backends", 1),
    ("wirelab-plugin", "crates/plugin", 1),
    ("wirelab-plugin-smoltcp-0-12", "plugins/smoltcp-0.12", 2),
    ("wirelab-sim", "crates/sim", 2),
    ("wirelab-judge", "crates/judge", 3),
    ("wirelab-net", "crates/net", 4),
    ("wirelab-scenario", "crates/scenario", 4),
    ("wirelab", "harness", 5),
    ("wirelab-cli", "crates/cli", 6),
    ("xtask", "xtask", 7),
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The package names of a manifest's `[dependencies]` (renamed ones by their `package`).
fn dependencies(manifest: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(manifest).unwrap_or_else(|e| panic!("{manifest:?}: {e}"));
    let table: toml::Table = text.parse().unwrap_or_else(|e| panic!("{manifest:?}: {e}"));
    let workspace: toml::Table = std::fs::read_to_string(workspace().join("Cargo.toml"))
        .expect("the workspace manifest")
        .parse()
        .expect("the workspace manifest parses");
    let shared = workspace
        .get("workspace")
        .and_then(|w| w.get("dependencies"))
        .and_then(|d| d.as_table())
        .cloned()
        .unwrap_or_default();
    let Some(deps) = table.get("dependencies").and_then(|d| d.as_table()) else {
        return Vec::new();
    };
    deps.iter()
        .map(|(name, spec)| {
            let from_workspace = spec.get("workspace").and_then(|w| w.as_bool()) == Some(true);
            let spec = if from_workspace {
                shared.get(name).cloned().unwrap_or_else(|| spec.clone())
            } else {
                spec.clone()
            };
            spec.get("package")
                .and_then(|p| p.as_str())
                .map_or_else(|| name.clone(), str::to_string)
        })
        .collect()
}

#[test]
fn crates_depend_on_lower_layers_only() {
    let mut problems = Vec::new();
    for (name, folder, layer) in LAYERS {
        for dependency in dependencies(&workspace().join(folder).join("Cargo.toml")) {
            let Some((_, _, theirs)) = LAYERS.iter().find(|(n, _, _)| *n == dependency) else {
                continue;
            };
            if theirs >= layer {
                problems.push(format!(
                    "{name} (layer {layer}) depends on {dependency} (layer {theirs})"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "dependencies against the layers:\n{}",
        problems.join("\n")
    );
    // The simulator never knows a concrete stack: it builds hosts through the registry.
    let sim = dependencies(&workspace().join("crates/sim/Cargo.toml"));
    assert!(!sim.contains(&"wirelab-backends".to_string()), "{sim:?}");
    assert!(!sim.contains(&"smoltcp".to_string()), "{sim:?}");
}

/// Every `.rs` file under `dir`, skipping build output.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_source_file_opens_with_a_line_saying_what_it_owns() {
    let mut files = Vec::new();
    for folder in [
        "stack",
        "crates",
        "harness",
        "xtask",
        "examples",
        "fuzz/fuzz_targets",
    ] {
        sources(&workspace().join(folder), &mut files);
    }
    assert!(files.len() > 50, "only {} files found", files.len());
    let missing: Vec<String> = files
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            !text.starts_with("//! ")
        })
        .map(|f| {
            f.strip_prefix(workspace())
                .unwrap_or(f)
                .display()
                .to_string()
        })
        .collect();
    assert!(
        missing.is_empty(),
        "files without a `//!` first line: {}",
        missing.join(", ")
    );
}

#[test]
fn the_readme_code_map_names_every_crate() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).expect("the README");
    for (name, folder, _) in LAYERS {
        assert!(
            readme.contains(&format!("{folder}/")) && readme.contains(name),
            "the README's code map does not show {name} ({folder}/)"
        );
    }
}

/// The modules of the crate whose sources are in `src`, each with the sibling modules it names
/// (`crate::<module>` outside comments).
fn module_graph(
    src: &Path,
) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let mut files = Vec::new();
    sources(src, &mut files);
    let mut graph = std::collections::BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(src).expect("under src");
        let module = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .map(|m| m.trim_end_matches(".rs").to_string())
            .expect("a file name");
        if module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("readable");
        let uses: &mut std::collections::BTreeSet<String> =
            graph.entry(module.clone()).or_default();
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or_default();
            for part in code.split("crate::").skip(1) {
                // `crate::a::x` names `a`; `crate::{a::x, b}` names `a` and `b`.
                let names: Vec<&str> = match part.strip_prefix('{') {
                    Some(group) => group
                        .split('}')
                        .next()
                        .unwrap_or_default()
                        .split(',')
                        .collect(),
                    None => vec![part],
                };
                for name in names {
                    let name: String = name
                        .trim()
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
                        .collect();
                    if !name.is_empty() && name != module {
                        uses.insert(name);
                    }
                }
            }
        }
    }
    graph
}

/// A circle among `graph`'s modules, if there is one: the modules on it, in order.
fn find_circle(
    graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut std::collections::BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            return Some(path[at..].to_vec());
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if graph.contains_key(next) {
                if let Some(circle) = visit(next, graph, path, done) {
                    return Some(circle);
                }
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = std::collections::BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_crate_has_a_circle_among_its_modules() {
    let mut circles = Vec::new();
    for (name, folder, _) in LAYERS {
        let graph = module_graph(&workspace().join(folder).join("src"));
        if let Some(circle) = find_circle(&graph) {
            circles.push(format!("{name}: {}", circle.join(" -> ")));
        }
    }
    assert!(
        circles.is_empty(),
        "module circles:\n{}",
        circles.join("\n")
    );
    // The check itself finds one.
    let mut graph = std::collections::BTreeMap::new();
    graph.insert("a".to_string(), ["b".to_string()].into());
    graph.insert("b".to_string(), ["a".to_string()].into());
    assert_eq!(
        find_circle(&graph),
        Some(vec!["a".to_string(), "b".to_string()])
    );
}
