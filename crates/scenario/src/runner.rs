//! One run of a scenario or a conformance script the way every front end plays it (the `wirelab` command, `cargo test`, users' suites): judged, compared with or blessed into its goldens, its artifacts written, and, for stacks that need it, played in a child process of the program itself.
//!
//! A child process is this same executable started again with [`CHILD_ENV`] set to a JSON
//! request; every program that may be such a child calls [`serve_child_if_asked`] first thing
//! in `main`, with the same stack registry, and the child answers with one JSON line on
//! standard output. A child that dies (an lwIP assertion calls `abort()`) fails that run only,
//! with its seed and last words; the other runs go on.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use judge::diff::AppOutcome;
use judge::expect::ExpectationResult;
use judge::reference::{reference_verdict, ReferenceVerdict};
use serde::{Deserialize, Serialize};
use sim::world::RunOptions;
use stack::Registry;

use crate::check::{check_on, snapshot_agrees_with_capture};
use crate::child::{how_it_ended, last_words};
use crate::format::Scenario;
use crate::golden::{
    compare_capture, compare_snapshot, golden_paths, golden_variant, snapshot_contents,
    snapshot_file_text, write_atomic, GoldenPaths,
};
use crate::script::{self, Script, Verdict};

/// Set, in a child process, to the JSON of the run it is to do.
pub const CHILD_ENV: &str = "WIRELAB_CHILD";

/// The seed every script runs with: the peer's ISN and the stack's own randomness come from it.
pub const SCRIPT_SEED: u64 = 1;

/// How runs are played and where what they produce goes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Settings {
    /// The goldens of the scenarios run: `golden/` beside their root.
    pub golden_root: PathBuf,
    /// Where captures, traces and snapshots go (`<out>/<name>/...`); `None` writes none.
    pub out: Option<PathBuf>,
    /// Write the artifacts of every run; otherwise only of runs that fail.
    pub all_artifacts: bool,
    /// Rewrite the goldens with what each run produced (atomically), instead of comparing.
    pub bless: bool,
    /// Compare (or bless) goldens at all; a run that only wants the checks' verdict says no.
    pub goldens: bool,
    /// Compare the snapshot with its golden here; a suite that lets insta do it says no.
    pub compare_snapshot: bool,
    /// Also hold each run to turmoil's application-level reference.
    pub reference: bool,
    /// How the printed commands that reproduce or bless a run begin, like `cargo xtask
    /// scenarios`; `None` prints none (a test suite says how to rerun its own trials).
    pub command: Option<String>,
    /// A test hook: the child running this scenario on lwIP makes its first host misuse
    /// lwIP's raw API, so that an lwIP assertion fires (see `WIRELAB_LWIP_TEST_ASSERT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_lwip_assert: Option<String>,
}

impl Settings {
    /// Settings that compare every run with the goldens in `golden_root` and write nothing.
    pub fn new(golden_root: impl Into<PathBuf>) -> Settings {
        Settings {
            golden_root: golden_root.into(),
            out: None,
            all_artifacts: false,
            bless: false,
            goldens: true,
            compare_snapshot: true,
            reference: false,
            command: None,
            test_lwip_assert: None,
        }
    }

    /// `reproduce: <the command that plays one run again>`, when there is a command.
    pub fn reproduce(&self, name: &str, seed: u64, stack: Option<&str>) -> Option<String> {
        let command = self.command.as_ref()?;
        Some(format!(
            "reproduce: {command}{} --filter {name} --seed {seed}",
            stack_option(stack)
        ))
    }
}

/// `--stack <name>` when a run moves hosts onto a stack, for the commands we print.
pub fn stack_option(stack: Option<&str>) -> String {
    stack.map(|s| format!(" --stack {s}")).unwrap_or_default()
}

/// What one run of a scenario showed, in a form that survives a trip through JSON.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunSummary {
    pub name: String,
    pub seed: u64,
    /// The stack every host was moved onto, if the run moved them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
    pub passed: bool,
    pub outcome: String,
    /// Everything that fails the run, one sentence (or paragraph) each.
    pub problems: Vec<String>,
    pub end_time_us: u64,
    pub frames_emitted: u64,
    pub frames_delivered: u64,
    pub trace_hash: String,
    pub expectations: Vec<ExpectationResult>,
    pub apps: Vec<AppOutcome>,
    /// What turmoil's application-level reference says of this run, when it was asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<ReferenceVerdict>,
}

impl RunSummary {
    /// A run that never produced a report, failed for `problems`.
    fn failed(name: &str, seed: u64, stack: Option<&str>, outcome: String) -> RunSummary {
        RunSummary {
            name: name.to_string(),
            seed,
            stack: stack.map(str::to_string),
            passed: false,
            outcome,
            problems: Vec::new(),
            end_time_us: 0,
            frames_emitted: 0,
            frames_delivered: 0,
            trace_hash: String::new(),
            expectations: Vec::new(),
            apps: Vec::new(),
            reference: None,
        }
    }
}

/// One run's result, what it blessed, and its snapshot for a caller that compares it itself.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Judged {
    pub summary: RunSummary,
    /// The golden files this run wrote.
    pub blessed: Vec<PathBuf>,
    /// The run's snapshot and its golden's path, when the run was at the scenario's own seed
    /// and has goldens (not a real-time run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<(String, PathBuf)>,
    /// The run passed its checks (expectations, oracles, known failures), whatever its goldens
    /// say.
    pub checks_passed: bool,
    /// What its goldens say: each capture or snapshot that differs, is missing or is broken.
    /// These are among the summary's problems too.
    #[serde(default)]
    pub golden_problems: Vec<String>,
}

/// Whether a run of `scenario` with every host on `stack` (as written for `None`) involves a
/// stack whose runs belong in a child process of their own.
pub fn needs_own_process(scenario: &Scenario, stack: Option<&str>, stacks: &Registry) -> bool {
    let uses = |name: &str| stacks.get(name).is_some_and(|f| f.needs_own_process());
    match stack {
        Some(stack) => uses(stack),
        None => scenario.config.hosts.iter().any(|h| uses(&h.stack)),
    }
}

/// Whether such a run is paced to the wall clock (and so has no goldens).
pub fn is_real_time(scenario: &Scenario, stack: Option<&str>, stacks: &Registry) -> bool {
    let real = |name: &str| stacks.get(name).is_some_and(|f| f.real_time());
    match stack {
        Some(stack) => real(stack),
        None => scenario.config.hosts.iter().any(|h| real(&h.stack)),
    }
}

/// Why `scenario` cannot run with every host on `stack` (too many hosts, a time limit a
/// real-time stack would spend in real time), or `None`.
pub fn cannot_run_on(scenario: &Scenario, stack: &str, stacks: &Registry) -> Option<String> {
    let moved = scenario.on_stack(Some(stack));
    let error = match moved.config.check_stacks(stacks) {
        Err((_, error)) => Some(error),
        Ok(()) => moved.config.exceeds_real_time_limits(stacks),
    };
    error.map(|e| e.to_string())
}

/// Runs `scenario` with every host on `stack` (as written for `None`) at `seed`, here, and
/// judges it: its checks, and at the scenario's own seed its goldens (compared, or written with
/// `bless`). Artifacts go to `<out>/<name>/` (`<out>/<name>/seed-<n>/` at another seed).
pub fn run_scenario(
    scenario: &Scenario,
    stack: Option<&str>,
    seed: u64,
    stacks: &Registry,
    settings: &Settings,
) -> Judged {
    let mut judged = Judged {
        summary: RunSummary::failed(&scenario.name, seed, stack, String::new()),
        blessed: Vec::new(),
        snapshot: None,
        checks_passed: false,
        golden_problems: Vec::new(),
    };
    let checked = match check_on(scenario, stack, seed, stacks, &RunOptions::default()) {
        Ok(checked) => checked,
        Err(error) => {
            judged.summary.outcome = "not started".to_string();
            judged
                .summary
                .problems
                .push(format!("the run could not start: {error}"));
            return judged;
        }
    };
    let on_stack = scenario.on_stack(stack);
    // turmoil replays the applications at the scenario's own seed; other seeds change only
    // the impairments, which the reference leaves out.
    let reference = settings
        .reference
        .then(|| reference_verdict(on_stack.workload(), &checked.report));
    let mut problems = checked.problems.clone();
    let snapshot = checked.snapshot();
    let goldens =
        settings.goldens && !is_real_time(scenario, stack, stacks) && seed == scenario.config.seed;
    let segments: Vec<String> = checked
        .report
        .captures
        .iter()
        .map(|c| c.segment.clone())
        .collect();
    let extension = scenario.config.capture.format.extension();
    let golden = golden_paths(
        &settings.golden_root,
        &scenario.name,
        golden_variant(scenario, stack),
        &segments,
        extension,
    );
    let failed = !checked.passed();
    if let Some(out) = &settings.out {
        if settings.all_artifacts || failed {
            let dir = if seed == scenario.config.seed {
                out.join(&scenario.name)
            } else {
                out.join(&scenario.name).join(format!("seed-{seed}"))
            };
            let mut files = vec![
                ("trace.txt".to_string(), checked.trace_text().into_bytes()),
                ("snapshot.txt".to_string(), snapshot.clone().into_bytes()),
            ];
            for capture in &checked.report.captures {
                if let Some(bytes) = &capture.bytes {
                    files.push((format!("{}.{extension}", capture.segment), bytes.clone()));
                }
            }
            for (file, bytes) in files {
                let path = dir.join(file);
                if let Err(e) = write_atomic(&path, &bytes) {
                    problems.push(format!("writing {}: {e}", path.display()));
                }
            }
        }
    }
    if goldens {
        judge_goldens(
            &checked.report.captures,
            &snapshot,
            &golden,
            settings,
            &mut judged.golden_problems,
            &mut judged.blessed,
        );
        problems.extend(judged.golden_problems.iter().cloned());
        if let Some(command) = settings.command.as_ref() {
            if !settings.bless && !problems.is_empty() && !failed {
                problems.push(format!(
                    "bless with: {command}{} --filter {} --bless",
                    stack_option(stack),
                    scenario.name
                ));
            }
        }
        judged.snapshot = Some((snapshot, golden.snapshot.clone()));
    }
    if !problems.is_empty() {
        problems.extend(settings.reproduce(&scenario.name, seed, stack));
    }
    judged.checks_passed = !failed;
    judged.summary = RunSummary {
        name: scenario.name.clone(),
        seed,
        stack: stack.map(str::to_string),
        passed: problems.is_empty(),
        outcome: checked.report.outcome.to_string(),
        problems,
        end_time_us: checked.report.stats.end_time_us,
        frames_emitted: checked.report.stats.frames_emitted,
        frames_delivered: checked.report.stats.frames_delivered,
        trace_hash: format!("{:016x}", checked.report.trace_hash()),
        expectations: checked.expectations.clone(),
        apps: checked.report.apps.iter().map(AppOutcome::from).collect(),
        reference,
    };
    judged
}

/// Compares a run's captures and snapshot with their goldens (or, blessing, writes those that
/// changed), and checks that the golden snapshot and captures tell the same story.
fn judge_goldens(
    captures: &[sim::world::SegmentCapture],
    snapshot: &str,
    golden: &GoldenPaths,
    settings: &Settings,
    problems: &mut Vec<String>,
    blessed: &mut Vec<PathBuf>,
) {
    let mut bless = |path: &Path, bytes: &[u8], problems: &mut Vec<String>| {
        if std::fs::read(path).ok().as_deref() == Some(bytes) {
            return;
        }
        match write_atomic(path, bytes) {
            Ok(()) => blessed.push(path.to_path_buf()),
            Err(e) => problems.push(format!("blessing {}: {e}", path.display())),
        }
    };
    for (capture, (_, path)) in captures.iter().zip(&golden.captures) {
        let Some(bytes) = &capture.bytes else {
            continue;
        };
        if settings.bless {
            bless(path, bytes, problems);
        } else if let Err(mismatch) = compare_capture(path, bytes) {
            problems.push(mismatch.to_string());
        }
    }
    if settings.bless {
        bless(
            &golden.snapshot,
            snapshot_file_text(snapshot).as_bytes(),
            problems,
        );
        return;
    }
    if settings.compare_snapshot {
        if let Err(mismatch) = compare_snapshot(&golden.snapshot, snapshot) {
            problems.push(format!(
                "snapshot {mismatch}\n  review: cargo insta review (after cargo test), or bless"
            ));
        }
    }
    // The reviewed snapshot and the byte-exact pcap must tell the same story.
    if let Ok(text) = std::fs::read_to_string(&golden.snapshot) {
        let Some(contents) = snapshot_contents(&text) else {
            problems.push(format!(
                "the golden snapshot {} is broken: it does not start with insta's `---` header; restore it from git or re-bless",
                golden.snapshot.display()
            ));
            return;
        };
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
}

/// What a child process is asked to do.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "run", rename_all = "snake_case")]
enum ChildRequest {
    Scenario {
        path: PathBuf,
        root: PathBuf,
        stack: Option<String>,
        seed: u64,
        settings: Settings,
    },
    Script {
        path: PathBuf,
        name: String,
        backend: String,
        out: Option<PathBuf>,
    },
}

/// Runs `scenario` like [`run_scenario`], in a child process of this program when one of its
/// stacks needs that ([`needs_own_process`]), here otherwise. `root` is the folder the scenario
/// was found in, from which the child reads it again.
pub fn play_scenario(
    scenario: &Scenario,
    root: &Path,
    stack: Option<&str>,
    seed: u64,
    stacks: &Registry,
    settings: &Settings,
) -> Judged {
    if !needs_own_process(scenario, stack, stacks) {
        return run_scenario(scenario, stack, seed, stacks, settings);
    }
    let request = ChildRequest::Scenario {
        path: scenario.path.clone(),
        root: root.to_path_buf(),
        stack: stack.map(str::to_string),
        seed,
        settings: settings.clone(),
    };
    let assert_host = settings
        .test_lwip_assert
        .as_deref()
        .filter(|name| *name == scenario.name)
        .and_then(|_| scenario.config.hosts.first())
        .map(|h| h.name.clone());
    let output = match spawn(&request, assert_host.as_deref()) {
        Ok(output) => output,
        Err(e) => {
            let mut summary = RunSummary::failed(&scenario.name, seed, stack, "not started".into());
            summary.problems.push(e);
            return Judged {
                summary,
                blessed: Vec::new(),
                snapshot: None,
                checks_passed: false,
                golden_problems: Vec::new(),
            };
        }
    };
    if output.status.success() {
        let stdout = String::from_utf8_lossy(&output.stdout);
        if let Some(judged) = stdout
            .lines()
            .last()
            .and_then(|line| serde_json::from_str::<Judged>(line).ok())
        {
            return judged;
        }
    }
    let how = format!("the process {}", how_it_ended(output.status));
    let mut summary = RunSummary::failed(&scenario.name, seed, stack, format!("aborted: {how}"));
    summary.problems.push(format!(
        "{how} running on {} at seed {seed}; its last words:\n{}",
        stack.unwrap_or("the scenario's stacks"),
        last_words(&output, 5)
    ));
    summary
        .problems
        .extend(settings.reproduce(&scenario.name, seed, stack));
    Judged {
        summary,
        blessed: Vec::new(),
        snapshot: None,
        checks_passed: false,
        golden_problems: Vec::new(),
    }
}

/// Starts this executable again with `request`, and waits for it. A scenario's child gets the
/// lwIP test hook only when `--test-lwip-assert` named it (`lwip_assert_host`); a script's
/// child inherits this process's environment, hook included.
fn spawn(
    request: &ChildRequest,
    lwip_assert_host: Option<&str>,
) -> Result<std::process::Output, String> {
    let exe = std::env::current_exe().map_err(|e| format!("finding this program: {e}"))?;
    let json = serde_json::to_string(request).map_err(|e| e.to_string())?;
    let mut command = Command::new(exe);
    command
        .env(CHILD_ENV, json)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null());
    if let ChildRequest::Scenario { .. } = request {
        command.env_remove(LWIP_TEST_ASSERT_ENV);
        if let Some(host) = lwip_assert_host {
            command.env(LWIP_TEST_ASSERT_ENV, host);
        }
    }
    command
        .output()
        .map_err(|e| format!("starting a child process: {e}"))
}

/// The lwIP backend's test hook (`WIRELAB_LWIP_TEST_ASSERT`): a child of a run that is not meant
/// to die must never inherit it.
const LWIP_TEST_ASSERT_ENV: &str = "WIRELAB_LWIP_TEST_ASSERT";

/// True in a child process started by this module.
pub fn is_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}

/// In a child process started by this module: does the run it was asked for, prints the
/// result as one JSON line, and exits. Elsewhere, returns at once.
pub fn serve_child_if_asked(stacks: &Registry) {
    let Some(json) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let request: ChildRequest = match serde_json::from_str(&json.to_string_lossy()) {
        Ok(request) => request,
        Err(e) => {
            eprintln!("{CHILD_ENV} holds no run this program understands: {e}");
            std::process::exit(2);
        }
    };
    let line = match request {
        ChildRequest::Scenario {
            path,
            root,
            stack,
            seed,
            settings,
        } => match crate::format::load(&path, &root, stacks) {
            Ok(scenario) => {
                let judged = run_scenario(&scenario, stack.as_deref(), seed, stacks, &settings);
                serde_json::to_string(&judged)
            }
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(2);
            }
        },
        ChildRequest::Script {
            path,
            name,
            backend,
            out,
        } => match script::load_named(&path, &name) {
            Ok(script) => {
                serde_json::to_string(&run_script(&script, &backend, stacks, out.as_deref()))
            }
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(2);
            }
        },
    };
    match line {
        Ok(line) => {
            println!("{line}");
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("the result could not be written: {e}");
            std::process::exit(2);
        }
    }
}

/// What one script did on one backend.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScriptResult {
    pub name: String,
    pub backend: String,
    /// `passed`, `known_failure`, `not_run` or `unexpected`.
    pub verdict: String,
    /// The requirement a known failure breaks.
    pub requirement: Option<String>,
    /// What happened, for a failure of either kind or a run that did not happen.
    pub message: Option<String>,
    /// The decoded trace, for an unexpected failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

impl ScriptResult {
    /// True when the run went as the script says it goes on its backend.
    pub fn as_expected(&self) -> bool {
        self.verdict != "unexpected"
    }
}

/// Plays `script` on `backend` here, writes `<out>/scripts/<name>@<backend>.pcapng` and
/// `.trace` (with an `out`), and judges the run against what the script declares.
pub fn run_script(
    script: &Script,
    backend: &str,
    stacks: &Registry,
    out: Option<&Path>,
) -> ScriptResult {
    let run = script::run(script, backend, stacks, SCRIPT_SEED);
    let mut written = Ok(());
    if let Some(out) = out {
        let base = out
            .join("scripts")
            .join(format!("{}@{backend}", script.name));
        let with = |extension: &str| {
            let mut os = base.clone().into_os_string();
            os.push(extension);
            PathBuf::from(os)
        };
        written = write_atomic(&with(".pcapng"), &run.capture)
            .and_then(|()| write_atomic(&with(".trace"), run.trace.as_bytes()))
            .map_err(|e| format!("writing {}.*: {e}", base.display()));
    }
    let (verdict, requirement, message) = match script::judge(script, &run) {
        Verdict::Passed => ("passed", None, None),
        Verdict::NotRun(reason) => ("not_run", None, Some(reason)),
        Verdict::KnownFailure(known) => (
            "known_failure",
            Some(known.requirement.clone()),
            Some(format!(
                "line {}: {} ({})",
                known.line,
                known.description,
                run.failure
                    .as_ref()
                    .map(|f| f.message.as_str())
                    .unwrap_or_default()
            )),
        ),
        Verdict::Unexpected(message) => ("unexpected", None, Some(message)),
    };
    let (verdict, message) = match written {
        Err(problem) => ("unexpected", Some(problem)),
        Ok(()) => (verdict, message),
    };
    ScriptResult {
        name: script.name.clone(),
        backend: backend.to_string(),
        verdict: verdict.to_string(),
        requirement,
        message,
        trace: (verdict == "unexpected").then(|| run.trace.clone()),
    }
}

/// Plays `script` like [`run_script`], in a child process of this program when `backend`
/// needs that, here otherwise.
pub fn play_script(
    script: &Script,
    backend: &str,
    stacks: &Registry,
    out: Option<&Path>,
) -> ScriptResult {
    if !stacks.get(backend).is_some_and(|f| f.needs_own_process()) {
        return run_script(script, backend, stacks, out);
    }
    let request = ChildRequest::Script {
        path: script.path.clone(),
        name: script.name.clone(),
        backend: backend.to_string(),
        out: out.map(Path::to_path_buf),
    };
    let failed = |message: String| ScriptResult {
        name: script.name.clone(),
        backend: backend.to_string(),
        verdict: "unexpected".to_string(),
        requirement: None,
        message: Some(message),
        trace: None,
    };
    let output = match spawn(&request, None) {
        Ok(output) => output,
        Err(e) => return failed(e),
    };
    if output.status.success() {
        let stdout = String::from_utf8_lossy(&output.stdout);
        if let Some(result) = stdout
            .lines()
            .last()
            .and_then(|line| serde_json::from_str::<ScriptResult>(line).ok())
        {
            return result;
        }
    }
    // A child that printed no result line is reported with both of its streams: lwIP writes
    // a failed assertion on standard output, just before it aborts.
    failed(format!(
        "the {backend} run {} (seed {SCRIPT_SEED}); its last words:\n{}",
        how_it_ended(output.status),
        last_words(&output, 5)
    ))
}
