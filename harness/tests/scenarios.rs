//! One test per scenario file (libtest-mimic): the run passes its expectations and oracles, its captures match the golden pcaps byte for byte, its decoded snapshot matches the reviewed insta snapshot, and the two goldens agree; plus tidy checks on the library.

use std::path::{Path, PathBuf};

use harness::check::{check, snapshot_agrees_with_capture};
use harness::golden::{compare_capture, golden_paths, snapshot_contents};
use harness::scenario::{discover, json_schema, load, Scenario};
use harness::sim::RunOptions;
use libtest_mimic::{Arguments, Failed, Trial};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("harness lives in the workspace")
        .to_path_buf()
}

fn capture_extension(scenario: &Scenario) -> &'static str {
    match scenario.config.capture.format {
        harness::capture::CaptureFormat::Pcap => "pcap",
        harness::capture::CaptureFormat::Pcapng => "pcapng",
    }
}

fn check_scenario(scenario: &Scenario) -> Result<(), Failed> {
    let checked = check(scenario, scenario.config.seed, &RunOptions::default())
        .map_err(|e| format!("{}: the world could not be built: {e}", scenario.name))?;
    let reproduce = format!(
        "reproduce: cargo xtask scenarios --filter {} --seed {}",
        scenario.name, scenario.config.seed
    );
    if !checked.passed() {
        return Err(format!("{}\n{reproduce}", checked.problems.join("\n")).into());
    }
    let segments: Vec<String> = checked
        .report
        .captures
        .iter()
        .map(|c| c.segment.clone())
        .collect();
    let golden = golden_paths(
        &workspace().join("golden"),
        &scenario.name,
        &segments,
        capture_extension(scenario),
    );
    let mut problems = Vec::new();
    for (capture, (_, path)) in checked.report.captures.iter().zip(&golden.captures) {
        let bytes = capture
            .bytes
            .as_deref()
            .ok_or("the capture was not kept in memory")?;
        if let Err(mismatch) = compare_capture(path, bytes) {
            problems.push(mismatch.to_string());
        }
    }
    // The reviewed snapshot and the byte-exact pcap must tell the same story.
    if let Ok(text) = std::fs::read_to_string(&golden.snapshot) {
        let contents = snapshot_contents(&text).ok_or_else(|| {
            format!(
                "the golden snapshot {} is broken: no insta header",
                golden.snapshot.display()
            )
        })?;
        for (segment, path) in &golden.captures {
            if let Ok(bytes) = std::fs::read(path) {
                if let Err(e) = snapshot_agrees_with_capture(contents, segment, &bytes) {
                    problems.push(format!(
                        "{} and {} disagree: {e}",
                        golden.snapshot.display(),
                        path.display()
                    ));
                }
            }
        }
    }
    if !problems.is_empty() {
        return Err(format!(
            "{}\nbless with: cargo xtask scenarios --filter {} --bless\n{reproduce}",
            problems.join("\n"),
            scenario.name
        )
        .into());
    }
    let snapshot = checked.snapshot();
    let folder = golden
        .snapshot
        .parent()
        .ok_or("a snapshot path has a folder")?
        .to_path_buf();
    let name = golden
        .snapshot
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or("a snapshot path has a name")?
        .to_string();
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(folder);
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(false);
    settings.bind(|| insta::assert_snapshot!(name, snapshot));
    Ok(())
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

/// The example in the README is a real scenario: it parses and passes.
fn readme_example_runs() -> Result<(), Failed> {
    let readme =
        std::fs::read_to_string(workspace().join("README.md")).map_err(|e| e.to_string())?;
    let start = readme
        .find("```toml\n")
        .ok_or("the README has no TOML example")?
        + 8;
    let end = start
        + readme[start..]
            .find("```")
            .ok_or("the TOML example is not closed")?;
    let scenario = harness::scenario::parse(&readme[start..end], Path::new("README.md"), None)
        .map_err(|e| e.to_string())?;
    let checked = check(&scenario, scenario.config.seed, &RunOptions::default())
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
    let mut orphans = Vec::new();
    let mut pending = vec![root.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| e.to_string())? {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let relative = path
                .strip_prefix(&root)
                .map_err(|e| e.to_string())?
                .to_string_lossy()
                .replace('\\', "/");
            let owned = scenarios.iter().any(|s| {
                relative
                    .strip_prefix(&s.name)
                    .is_some_and(|rest| rest.starts_with('.') && !rest[1..].contains('/'))
            });
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
    let args = Arguments::from_args();
    let root = workspace().join("scenarios");
    let mut trials = Vec::new();
    let mut scenarios = Vec::new();
    match discover(&root) {
        Ok(files) => {
            for file in files {
                match load(&file, &root) {
                    Ok(scenario) => scenarios.push(scenario),
                    Err(e) => {
                        let name = format!("scenario::{}", file.display());
                        let message = e.to_string();
                        trials.push(Trial::test(name, move || Err(message.into())));
                    }
                }
            }
        }
        Err(e) => {
            let message = format!("cannot list {}: {e}", root.display());
            trials.push(Trial::test(
                "scenario::library",
                move || Err(message.into()),
            ));
        }
    }
    let names: Vec<Scenario> = scenarios.clone();
    trials.push(Trial::test("tidy::schema_is_current", schema_is_current));
    trials.push(Trial::test(
        "tidy::readme_example_runs",
        readme_example_runs,
    ));
    trials.push(Trial::test("tidy::no_orphan_goldens", move || {
        no_orphan_goldens(&names)
    }));
    trials.push(Trial::test("tidy::library_has_at_least_20_scenarios", {
        let count = scenarios.len();
        move || {
            if count >= 20 {
                Ok(())
            } else {
                Err(format!("the library has {count} scenarios; it promises at least 20").into())
            }
        }
    }));
    for scenario in scenarios {
        trials.push(Trial::test(
            format!("scenario::{}", scenario.name),
            move || check_scenario(&scenario),
        ));
    }
    libtest_mimic::run(&args, trials).exit();
}
