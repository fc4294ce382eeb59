//! Every scenario declares the RFC requirements it exercises, and every id it uses (in
//! `requirements` and in `finding` checks) is in the catalogue, crates/scenario/src/requirements.toml.

use std::path::{Path, PathBuf};

use wirelab::judge::expect::Expectation;
use wirelab::scenario::requirements::Catalogue;

fn scenarios_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("scenarios")
}

fn catalogue() -> &'static Catalogue {
    match Catalogue::builtin() {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

/// Problems with the requirement ids of every scenario file under `root`, each naming its
/// file.
fn requirement_problems(root: &Path, catalogue: &Catalogue) -> Vec<String> {
    let found = wirelab::scenario::folder::find(&[root.to_path_buf()], &wirelab::builtin_stacks());
    let mut problems: Vec<String> = found
        .errors
        .iter()
        .map(|e| format!("does not load: {e}"))
        .collect();
    for scenario in found.scenarios {
        let shown = format!("{}.toml", scenario.name);
        if scenario.requirements.is_empty() {
            problems.push(format!(
                "scenarios/{shown}: declares no requirement; list the ids it exercises in `requirements = [...]`"
            ));
        }
        let findings = scenario.expectations.iter().filter_map(|e| match e {
            Expectation::Finding { requirement, .. } => Some(requirement),
            _ => None,
        });
        for id in scenario.requirements.iter().chain(findings) {
            if let Some(why) = catalogue.unknown(id) {
                problems.push(format!("scenarios/{shown}: {why}"));
            }
        }
    }
    problems
}

#[test]
fn every_scenario_declares_catalogued_requirements() {
    let problems = requirement_problems(&scenarios_root(), catalogue());
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn a_scenario_with_an_unknown_or_missing_requirement_is_named() {
    let dir = std::env::temp_dir().join(format!("wirelab-conformance-{}", std::process::id()));
    let area = dir.join("tcp");
    let Ok(original) = std::fs::read_to_string(scenarios_root().join("tcp/handshake.toml")) else {
        panic!("scenarios/tcp/handshake.toml is unreadable");
    };
    let swap = |requirements: &str| -> String {
        original
            .lines()
            .map(|l| {
                if l.starts_with("requirements = ") {
                    requirements.to_string()
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let written = std::fs::create_dir_all(&area).and_then(|()| {
        std::fs::write(
            area.join("handshake.toml"),
            swap(r#"requirements = ["rfc9293:MUST-14", "rfc9293:MUTS-15"]"#),
        )
    });
    assert!(written.is_ok(), "{written:?}");
    let unknown = requirement_problems(&dir, catalogue());
    let none_written = std::fs::write(area.join("handshake.toml"), swap("requirements = []"));
    assert!(none_written.is_ok(), "{none_written:?}");
    let missing = requirement_problems(&dir, catalogue());
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(unknown.len(), 1, "{unknown:#?}");
    assert!(
        unknown[0].starts_with("scenarios/tcp/handshake.toml: requirement `rfc9293:MUTS-15`"),
        "{unknown:#?}"
    );
    assert!(
        unknown[0].contains("did you mean `rfc9293:MUST-15`"),
        "{unknown:#?}"
    );
    assert_eq!(missing.len(), 1, "{missing:#?}");
    assert!(
        missing[0].contains("tcp/handshake.toml: declares no requirement"),
        "{missing:#?}"
    );
}
