//! The conformance scripts in `cargo xtask scenarios` (and `cargo xtask conformance`): every script on every backend, a pcap and a decoded trace per run, lwIP runs in child processes.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::Context;
use harness::config::StackKind;
use harness::golden::write_atomic;
use harness::scenario::stack_name;
use harness::script::{self, Script, Verdict};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// The seed every script runs with: the peer's ISN and the stack's own randomness come from it.
pub const SCRIPT_SEED: u64 = 1;

/// What one script did on one backend.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScriptResult {
    pub name: String,
    pub backend: String,
    /// `passed`, `known_failure` or `unexpected`.
    pub verdict: String,
    /// The requirement a known failure breaks.
    pub requirement: Option<String>,
    /// What happened, for a failure of either kind.
    pub message: Option<String>,
}

pub fn scripts_root(workspace: &Path) -> PathBuf {
    workspace.join("scenarios/scripts")
}

/// `cargo xtask scenarios`: the scenario files, then (for a plain run at the scripts' own seed)
/// every conformance script whose name matches the filter, on every backend this machine has
/// (or the one `--stack` names). The exit code is the worse of the two.
pub fn scenarios_then_scripts(options: crate::scenarios::Options) -> anyhow::Result<ExitCode> {
    let with_scripts = options.diff.is_none()
        && options.seeds.unwrap_or(1) == 1
        && options.seed.is_none()
        && !options.bless
        && options.test_lwip_assert.is_none();
    let filter = options.filter.clone();
    let out = options.out.clone();
    let stack = options.stack;
    let scripts = match load_all(
        &scripts_root(&crate::scenarios::workspace_root()),
        filter.as_deref(),
    ) {
        Ok(scripts) => scripts,
        Err(errors) => {
            for error in &errors {
                eprintln!("error: {error}\n");
            }
            return Ok(ExitCode::from(2));
        }
    };
    // A filter that names scripts only (`--filter rst_in`) runs just those scripts.
    let scenario_matches = crate::scenarios::load_all(&crate::scenarios::workspace_root())
        .map(|all| {
            all.iter()
                .any(|s| filter.as_deref().is_none_or(|f| s.name.contains(f)))
        })
        .unwrap_or(true);
    let code = if with_scripts && !scripts.is_empty() && !scenario_matches {
        ExitCode::SUCCESS
    } else {
        crate::scenarios::run(options)?
    };
    if !with_scripts || code == ExitCode::from(2) {
        return Ok(code);
    }
    let backends = match stack {
        Some(kind) => vec![kind],
        None => available_backends(),
    };
    let results = run_all(&scripts, &backends, &out)?;
    if report(&results) {
        Ok(code)
    } else {
        Ok(ExitCode::from(1))
    }
}

/// The backends scripts run on by default: smoltcp always, lwIP when its library is
/// installed. The Linux kernel plays scripts in real time, so only `--stack linux` asks for it.
pub fn available_backends() -> Vec<StackKind> {
    let mut backends = vec![StackKind::Smoltcp];
    match stack::lwip::available() {
        Ok(()) => backends.push(StackKind::Lwip),
        Err(missing) => eprintln!("scripts: lwip backend not run: {missing}"),
    }
    backends
}

/// Loads every script under `root` whose name contains `filter`; unreadable scripts are
/// errors that name the file, line and column.
pub fn load_all(root: &Path, filter: Option<&str>) -> Result<Vec<Script>, Vec<String>> {
    let paths = script::discover(root).map_err(|e| vec![format!("{}: {e}", root.display())])?;
    let mut scripts = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        match script::load(&path, root) {
            Ok(s) if filter.is_none_or(|f| s.name.contains(f)) => scripts.push(s),
            Ok(_) => {}
            Err(e) => errors.push(e.to_string()),
        }
    }
    if errors.is_empty() {
        Ok(scripts)
    } else {
        Err(errors)
    }
}

/// Runs every script on every backend, writing `<out>/scripts/<name>@<backend>.pcapng` and
/// `.trace`, and prints a line per run. smoltcp runs in this process; lwIP runs each in a
/// child process, so that an lwIP assertion (which aborts) fails only its run.
pub fn run_all(
    scripts: &[Script],
    backends: &[StackKind],
    out: &Path,
) -> anyhow::Result<Vec<ScriptResult>> {
    let jobs: Vec<(&Script, StackKind)> = scripts
        .iter()
        .flat_map(|s| backends.iter().map(move |b| (s, *b)))
        .collect();
    let results: Vec<anyhow::Result<ScriptResult>> = jobs
        .par_iter()
        .map(|(script, backend)| match backend {
            StackKind::Smoltcp => run_here(script, *backend, out),
            StackKind::Lwip | StackKind::Linux => run_in_child(script, *backend, out),
        })
        .collect();
    results.into_iter().collect()
}

/// Plays one script here and writes its artifacts.
pub fn run_here(script: &Script, backend: StackKind, out: &Path) -> anyhow::Result<ScriptResult> {
    let run = script::run(script, backend, SCRIPT_SEED);
    let base = out
        .join("scripts")
        .join(format!("{}@{}", script.name, stack_name(backend)));
    if let Some(dir) = base.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    write_atomic(&base.with_extension("pcapng"), &run.capture)
        .with_context(|| format!("writing {}.pcapng", base.display()))?;
    write_atomic(&base.with_extension("trace"), run.trace.as_bytes())
        .with_context(|| format!("writing {}.trace", base.display()))?;
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
                run.failure.map(|f| f.message).unwrap_or_default()
            )),
        ),
        Verdict::Unexpected(message) => ("unexpected", None, Some(message)),
    };
    Ok(ScriptResult {
        name: script.name.clone(),
        backend: stack_name(backend).to_string(),
        verdict: verdict.to_string(),
        requirement,
        message,
    })
}

fn run_in_child(script: &Script, backend: StackKind, out: &Path) -> anyhow::Result<ScriptResult> {
    let exe = std::env::current_exe().context("finding the xtask executable")?;
    let output = Command::new(exe)
        .arg("script-child")
        .arg(&script.name)
        .arg("--backend")
        .arg(stack_name(backend))
        .arg("--out")
        .arg(out)
        .output()
        .context("starting a child process for an lwIP script")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if output.status.success() {
        if let Some(line) = stdout.lines().last() {
            if let Ok(result) = serde_json::from_str::<ScriptResult>(line) {
                return Ok(result);
            }
        }
    }
    // A child that printed no result line is reported with both of its streams: lwIP writes
    // a failed assertion on standard output, just before it aborts.
    Ok(ScriptResult {
        name: script.name.clone(),
        backend: stack_name(backend).to_string(),
        verdict: "unexpected".into(),
        requirement: None,
        message: Some(format!(
            "the {} run {} (seed {SCRIPT_SEED}); its last words: {}",
            stack_name(backend),
            harness::child::how_it_ended(output.status),
            harness::child::last_words(&output, 5).replace('\n', " | ")
        )),
    })
}

/// The hidden `script-child` command: one script, one backend, the result as a JSON line.
pub fn child(name: &str, backend: StackKind, out: &Path, workspace: &Path) -> anyhow::Result<()> {
    let root = scripts_root(workspace);
    let path = root.join(format!("{name}.pkt"));
    let script = script::load(&path, &root).map_err(|e| anyhow::anyhow!("{e}"))?;
    let result = run_here(&script, backend, out)?;
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

/// Prints one line per run and a summary; returns whether every run was as the scripts say.
pub fn report(results: &[ScriptResult]) -> bool {
    let mut unexpected = 0;
    let mut known = 0;
    let mut not_run = 0;
    for r in results {
        match r.verdict.as_str() {
            "passed" => println!("ok      script {}@{}", r.name, r.backend),
            "not_run" => {
                not_run += 1;
                println!(
                    "not run script {}@{}: {}",
                    r.name,
                    r.backend,
                    r.message.as_deref().unwrap_or_default()
                );
            }
            "known_failure" => {
                known += 1;
                println!(
                    "finding script {}@{}: {} {}",
                    r.name,
                    r.backend,
                    r.requirement.as_deref().unwrap_or_default(),
                    r.message.as_deref().unwrap_or_default()
                );
            }
            _ => {
                unexpected += 1;
                println!(
                    "FAILED  script {}@{}\n{}",
                    r.name,
                    r.backend,
                    r.message.as_deref().unwrap_or_default()
                );
            }
        }
    }
    println!(
        "scripts: {} runs, {} as expected ({} of them known findings, {} not run), {} unexpected",
        results.len(),
        results.len() - unexpected,
        known,
        not_run,
        unexpected
    );
    unexpected == 0
}
