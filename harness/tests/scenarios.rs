//! One test per scenario file, through the same `Suite` users run: the run passes its expectations and oracles, its captures match the golden pcaps byte for byte, its decoded snapshot matches the reviewed insta snapshot, and the two goldens agree; the same per scenario with every host on lwIP, against the `@lwip` goldens, each in a child process; plus tidy checks on the library.

use std::path::{Path, PathBuf};

use libtest_mimic::{Failed, Trial};
use wirelab::scenario::check::check;
use wirelab::scenario::folder;
use wirelab::scenario::format::json_schema;
use wirelab::scenario::golden::belongs_to;
use wirelab::scenario::Scenario;
use wirelab::sim::world::RunOptions;
use wirelab::Suite;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("harness lives in the workspace")
        .to_path_buf()
}

fn schema_is_current() -> Result<(), Failed> {
    let path = workspace().join("scenarios/schema.json");
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    if checked_in != json_schema() {
        return Err(format!(
            "{} is stale: regenerate it with `cargo xtask schema`",
            path.display()
        )
        .into());
    }
    Ok(())
}

/// The example scenario in the README is a real scenario: it parses and passes.
fn readme_example_runs() -> Result<(), Failed> {
    let readme =
        std::fs::read_to_string(workspace().join("README.md")).map_err(|e| e.to_string())?;
    let section = readme
        .find("## Scenario files")
        .ok_or("the README has no section `Scenario files`")?;
    let start = section
        + readme[section..]
            .find("```toml\n")
            .ok_or("the README has no TOML example of a scenario")?
        + 8;
    let end = start
        + readme[start..]
            .find("```")
            .ok_or("the TOML example is not closed")?;
    let stacks = wirelab::builtin_stacks();
    let scenario =
        wirelab::scenario::parse(&readme[start..end], Path::new("README.md"), None, &stacks)
            .map_err(|e| e.to_string())?;
    let checked = check(
        &scenario,
        scenario.config.seed,
        &stacks,
        &RunOptions::default(),
    )
    .map_err(|e| e.to_string())?;
    if checked.passed() {
        Ok(())
    } else {
        Err(checked.problems.join("\n").into())
    }
}

/// Every golden belongs to a scenario, so that a renamed or deleted scenario leaves nothing
/// behind that looks reviewed.
fn no_orphan_goldens(scenarios: &[Scenario]) -> Result<(), Failed> {
    let root = workspace().join("golden");
    let stacks = wirelab::stacks_with_plugins(&workspace().join("wirelab-plugins.toml"))?;
    let mut orphans = Vec::new();
    let mut pending = vec![root.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| e.to_string())? {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path == root.join("programs") {
                // The goldens of harness/tests/programs.rs, which checks them itself.
                continue;
            }
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let relative = path
                .strip_prefix(&root)
                .map_err(|e| e.to_string())?
                .to_string_lossy()
                .replace('\\', "/");
            let owned = scenarios
                .iter()
                .any(|s| belongs_to(&relative, &s.name, stacks.names()));
            if !owned {
                orphans.push(relative);
            }
        }
    }
    if orphans.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "golden files that belong to no scenario: {}",
            orphans.join(", ")
        )
        .into())
    }
}

fn main() {
    let library = workspace().join("scenarios");
    let stacks = wirelab::builtin_stacks();
    // The library reads with the built-in stacks alone, as a user's suite reads it: findings
    // recorded for plug-ins are no error where the plug-in is missing.
    let scenarios = folder::find(std::slice::from_ref(&library), &stacks).scenarios;
    let count = scenarios.len();
    Suite::folder(&library)
        .golden(workspace().join("golden"))
        .plugins(workspace().join("wirelab-plugins.toml"))
        .without_scripts()
        .as_written()
        .on("lwip")
        .on("smoltcp@0.12")
        .trial(Trial::test("tidy::schema_is_current", schema_is_current))
        .trial(Trial::test(
            "tidy::readme_example_runs",
            readme_example_runs,
        ))
        .trial(Trial::test("tidy::no_orphan_goldens", move || {
            no_orphan_goldens(&scenarios)
        }))
        .trial(Trial::test(
            "tidy::library_has_at_least_20_scenarios",
            move || {
                if count >= 20 {
                    Ok(())
                } else {
                    Err(
                        format!("the library has {count} scenarios; it promises at least 20")
                            .into(),
                    )
                }
            },
        ))
        .run()
}
