//! One test per scenario file (libtest-mimic): the run passes its expectations and oracles, its captures match the golden pcaps byte for byte, its decoded snapshot matches the reviewed insta snapshot, and the two goldens agree; the same per scenario with every host on lwIP, against the `@lwip` goldens, each in a child process; plus tidy checks on the library.
//!
//! libtest-mimic runs trials as threads of one process, and an lwIP assertion calls
//! `abort()`, which would end every trial at once. So each lwIP trial runs this test binary
//! again as a child process (told what to do by [`CHILD_ENV`]) and reports how the child
//! ended: an abort fails that one trial with its seed and lwIP's last words.

use std::path::{Path, PathBuf};

use harness::check::{check, snapshot_agrees_with_capture};
use harness::config::StackKind;
use harness::golden::{
    belongs_to, compare_capture, golden_paths, golden_variant, snapshot_contents,
};
use harness::scenario::{check_on, discover, json_schema, load, parse_stack, stack_name, Scenario};
use harness::sim::RunOptions;
use libtest_mimic::{Arguments, Failed, Trial};

/// Set to `<stack>:<scenario>` in a child process of this binary: it runs that one trial and
/// exits 0 when it passed, 1 with the reason on standard error when it did not.
const CHILD_ENV: &str = "WIRELAB_SCENARIO_TEST_CHILD";

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

/// The scenario with every host on `stack` (as written for `None`): its run, its goldens
/// (the scenario's own or the stack's `@<stack>` set) and its snapshot.
fn check_scenario(scenario: &Scenario, stack: Option<StackKind>) -> Result<(), Failed> {
    let checked = check_on(
        scenario,
        stack,
        scenario.config.seed,
        &RunOptions::default(),
    )
    .map_err(|e| format!("{}: the world could not be built: {e}", scenario.name))?;
    let stack_option = stack
        .map(|s| format!(" --stack {}", stack_name(s)))
        .unwrap_or_default();
    let reproduce = format!(
        "reproduce: cargo xtask scenarios{stack_option} --filter {} --seed {}",
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
        golden_variant(scenario, stack),
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
            "{}\nbless with: cargo xtask scenarios{stack_option} --filter {} --bless\n{reproduce}",
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
            let owned = scenarios.iter().any(|s| belongs_to(&relative, &s.name));
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

/// The trial of `scenario` on `stack`, run in a child process of this binary.
fn check_in_child(scenario: &Scenario, stack: StackKind) -> Result<(), Failed> {
    let output = harness::child::rerun_self(
        CHILD_ENV,
        &format!("{}:{}", stack_name(stack), scenario.name),
    )?;
    if output.status.success() {
        return Ok(());
    }
    let how = match std::os::unix::process::ExitStatusExt::signal(&output.status) {
        Some(_) => format!(
            "the child process running it on {} {} at seed {}; its last words:\n",
            stack_name(stack),
            harness::child::how_it_ended(output.status),
            scenario.config.seed
        ),
        None => String::new(),
    };
    Err(format!(
        "{how}{}\nreproduce: cargo xtask scenarios --stack {} --filter {} --seed {}",
        harness::child::last_words(&output, 40),
        stack_name(stack),
        scenario.name,
        scenario.config.seed
    )
    .into())
}

/// The child side of [`check_in_child`].
fn child_main(what: &str) -> ! {
    let result = (|| -> Result<(), String> {
        let (stack, name) = what
            .split_once(':')
            .ok_or_else(|| format!("{CHILD_ENV}={what}: expected <stack>:<scenario>"))?;
        let stack = parse_stack(stack)?;
        let root = workspace().join("scenarios");
        let file = root.join(format!("{name}.toml"));
        let scenario = load(&file, &root).map_err(|e| e.to_string())?;
        check_scenario(&scenario, Some(stack)).map_err(|f| {
            f.message()
                .map_or_else(|| "failed".to_string(), str::to_string)
        })
    })();
    harness::child::exit_with(result)
}

fn main() {
    if let Ok(what) = std::env::var(CHILD_ENV) {
        child_main(&what);
    }
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
        if golden_variant(&scenario, Some(StackKind::Lwip)).is_some() {
            let on_lwip = scenario.clone();
            trials.push(Trial::test(
                format!("scenario::{}@lwip", scenario.name),
                move || match stack::lwip::available() {
                    Ok(()) => check_in_child(&on_lwip, StackKind::Lwip),
                    Err(missing) => {
                        harness::skip_test(&missing.to_string());
                        Ok(())
                    }
                },
            ));
        }
        trials.push(Trial::test(
            format!("scenario::{}", scenario.name),
            move || check_scenario(&scenario, None),
        ));
    }
    libtest_mimic::run(&args, trials).exit();
}
