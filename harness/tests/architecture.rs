//! Tidy checks on the layout: wirelab's crates depend on one another in one direction only (the layers the README lists), every source file opens with a `//!` line saying what it owns, and the README's code map names every crate.

use std::path::{Path, PathBuf};

/// The crates in layer order: a crate may depend (outside its tests) only on crates of a
/// lower layer. `backends` sits beside `wire`: both need only the stack trait.
const LAYERS: &[(&str, &str, u32)] = &[
    ("wirelab-stack", "stack", 0),
    ("wirelab-wire", "crates/wire", 1),
    ("wirelab-backends", "crates/backends", 1),
    ("wirelab-sim", "crates/sim", 2),
    ("wirelab-judge", "crates/judge", 3),
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
