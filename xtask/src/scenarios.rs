//! `cargo xtask scenarios`: runs the scenario files in parallel, writes captures, traces, snapshots and a JSON summary, and compares them with the goldens.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use harness::check::{check, Checked, ExpectationResult};
use harness::config::StackKind;
use harness::golden::{
    compare_capture, compare_snapshot, golden_paths, snapshot_file_text, write_atomic,
};
use harness::scenario::{discover, load, Scenario};
use harness::sim::RunOptions;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

pub struct Options {
    pub filter: Option<String>,
    pub seed: Option<u64>,
    pub seeds: Option<u64>,
    pub jobs: Option<usize>,
    pub out: PathBuf,
    pub bless: bool,
    /// Run every host on this stack instead of the one its scenario names.
    pub stack: Option<StackKind>,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct RunSummary {
    name: String,
    seed: u64,
    pub(crate) passed: bool,
    outcome: String,
    pub(crate) problems: Vec<String>,
    end_time_us: u64,
    frames_emitted: u64,
    frames_delivered: u64,
    trace_hash: String,
    pub(crate) expectations: Vec<ExpectationResult>,
    /// Left empty by runs in a child process.
    #[serde(skip_deserializing)]
    apps: Vec<harness::apps::AppReport>,
}

#[derive(Serialize)]
struct Summary {
    scenarios: usize,
    runs: usize,
    passed: usize,
    failed: usize,
    blessed: Vec<String>,
    results: Vec<RunSummary>,
}

fn workspace_root() -> PathBuf {
    // xtask runs from anywhere inside the workspace; scenarios and goldens live at its root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

/// Reads every scenario file; all errors are reported, not just the first.
pub fn load_all(root: &Path) -> Result<Vec<Scenario>, Vec<String>> {
    let scenarios_root = root.join("scenarios");
    let files = discover(&scenarios_root)
        .map_err(|e| vec![format!("cannot list {}: {e}", scenarios_root.display())])?;
    let mut scenarios = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        let shown = file.strip_prefix(root).unwrap_or(&file).to_path_buf();
        match load(&file, &scenarios_root) {
            Ok(mut s) => {
                s.path = shown;
                scenarios.push(s);
            }
            Err(mut e) => {
                e.file = shown;
                errors.push(e.to_string());
            }
        }
    }
    if errors.is_empty() {
        Ok(scenarios)
    } else {
        Err(errors)
    }
}

/// One run's result, plus what was blessed.
pub(crate) struct Judged {
    pub(crate) summary: RunSummary,
    blessed: Vec<String>,
}

/// A path as the user knows it: relative to the workspace.
fn shown(path: &Path) -> String {
    let root = workspace_root();
    path.strip_prefix(&root)
        .unwrap_or(path)
        .display()
        .to_string()
}

fn reproduce(name: &str, seed: u64) -> String {
    format!("cargo xtask scenarios --filter {name} --seed {seed}")
}

/// Runs one scenario at one seed. Goldens are compared (or blessed) only at the scenario's
/// own seed, the one they were recorded with.
fn run_one(
    scenario: &Scenario,
    seed: u64,
    out: &Path,
    bless: bool,
    write_artifacts: bool,
    goldens: bool,
) -> anyhow::Result<Judged> {
    let checked: Checked = check(scenario, seed, &RunOptions::default())
        .with_context(|| format!("scenario {}", scenario.name))?;
    let mut problems = checked.problems.clone();
    let mut blessed = Vec::new();
    let snapshot = checked.snapshot();
    // Goldens are recorded with each scenario's own stacks, at its own seed.
    let at_golden_seed = goldens && seed == scenario.config.seed;
    let segments: Vec<String> = checked
        .report
        .captures
        .iter()
        .map(|c| c.segment.clone())
        .collect();
    let extension = match scenario.config.capture.format {
        harness::capture::CaptureFormat::Pcap => "pcap",
        harness::capture::CaptureFormat::Pcapng => "pcapng",
    };
    let golden = golden_paths(
        &workspace_root().join("golden"),
        &scenario.name,
        &segments,
        extension,
    );
    let dir = if seed == scenario.config.seed {
        out.join(&scenario.name)
    } else {
        out.join(&scenario.name).join(format!("seed-{seed}"))
    };
    if write_artifacts || !checked.passed() {
        write_atomic(
            &dir.join("trace.txt"),
            checked.report.trace_text().as_bytes(),
        )?;
        write_atomic(&dir.join("snapshot.txt"), snapshot.as_bytes())?;
    }
    for (capture, (segment, golden_path)) in checked.report.captures.iter().zip(&golden.captures) {
        let Some(bytes) = &capture.bytes else {
            continue;
        };
        if write_artifacts || !checked.passed() {
            write_atomic(&dir.join(format!("{segment}.{extension}")), bytes)?;
        }
        if !at_golden_seed {
            continue;
        }
        if bless {
            if std::fs::read(golden_path).ok().as_deref() != Some(&bytes[..]) {
                write_atomic(golden_path, bytes)
                    .with_context(|| format!("blessing {}", golden_path.display()))?;
                blessed.push(shown(golden_path));
            }
        } else if let Err(mismatch) = compare_capture(golden_path, bytes) {
            problems.push(format!(
                "{mismatch}\n  reproduce: {}",
                reproduce(&scenario.name, seed)
            ));
        }
    }
    if at_golden_seed {
        if bless {
            let text = snapshot_file_text(&snapshot);
            if std::fs::read_to_string(&golden.snapshot).ok().as_deref() != Some(&text[..]) {
                write_atomic(&golden.snapshot, text.as_bytes())
                    .with_context(|| format!("blessing {}", golden.snapshot.display()))?;
                blessed.push(shown(&golden.snapshot));
            }
        } else if let Err(mismatch) = compare_snapshot(&golden.snapshot, &snapshot) {
            problems.push(format!(
                "snapshot {mismatch}\n  review: cargo insta review (after cargo test), or bless: cargo xtask scenarios --filter {} --bless",
                scenario.name
            ));
        }
    }
    if !checked.passed() {
        problems.push(format!("reproduce: {}", reproduce(&scenario.name, seed)));
    }
    Ok(Judged {
        summary: RunSummary {
            name: scenario.name.clone(),
            seed,
            passed: problems.is_empty(),
            outcome: checked.report.outcome.to_string(),
            problems,
            end_time_us: checked.report.stats.end_time_us,
            frames_emitted: checked.report.stats.frames_emitted,
            frames_delivered: checked.report.stats.frames_delivered,
            trace_hash: format!("{:016x}", checked.report.trace_hash()),
            expectations: checked.expectations.clone(),
            apps: checked.report.apps.clone(),
        },
        blessed,
    })
}

pub fn run(options: Options) -> anyhow::Result<ExitCode> {
    let root = workspace_root();
    let scenarios = match load_all(&root) {
        Ok(s) => s,
        Err(errors) => {
            for error in &errors {
                eprintln!("error: {error}\n");
            }
            eprintln!("{} scenario file(s) could not be read", errors.len());
            return Ok(ExitCode::from(2));
        }
    };
    let scenarios: Vec<Scenario> = scenarios
        .into_iter()
        .filter(|s| options.filter.as_deref().is_none_or(|f| s.name.contains(f)))
        .collect();
    if options.stack == Some(StackKind::Lwip) {
        if let Err(missing) = stack::lwip::available() {
            eprintln!("error: --stack lwip: {missing}");
            return Ok(ExitCode::from(2));
        }
    }
    if scenarios.is_empty() {
        eprintln!(
            "error: no scenario matches the filter {:?}; scenario names are paths under scenarios/, like tcp/handshake",
            options.filter.unwrap_or_default()
        );
        return Ok(ExitCode::from(2));
    }
    let seeds = options.seeds.unwrap_or(1);
    if seeds == 0 {
        eprintln!("error: --seeds must be at least 1");
        return Ok(ExitCode::from(2));
    }
    if options.bless && options.stack.is_some() {
        eprintln!("error: goldens are recorded with each scenario's own stacks; leave out --stack to bless");
        return Ok(ExitCode::from(2));
    }
    if options.bless && (seeds > 1 || options.seed.is_some()) {
        eprintln!("error: --bless records goldens at each scenario's own seed; leave out --seed and --seeds");
        return Ok(ExitCode::from(2));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(options.jobs.unwrap_or(0))
        .build()
        .context("starting the worker threads")?;
    let jobs: Vec<(&Scenario, u64)> = scenarios
        .iter()
        .flat_map(|s| {
            let base = options.seed.unwrap_or(s.config.seed);
            (0..seeds).map(move |i| (s, base.wrapping_add(i)))
        })
        .collect();
    let progress = if seeds > 1 {
        let bar = ProgressBar::new(jobs.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} runs, {per_sec}, {eta} left")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        if std::env::var_os("CI").is_some() {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        bar
    } else {
        ProgressBar::hidden()
    };
    let write_artifacts = seeds == 1;
    let results: Vec<anyhow::Result<Judged>> = pool.install(|| {
        jobs.par_iter()
            .map(|(s, seed)| {
                let result = match options.stack {
                    None => run_one(s, *seed, &options.out, options.bless, write_artifacts, true),
                    Some(stack) => run_in_child(s, *seed, stack, &options.out),
                };
                progress.inc(1);
                result
            })
            .collect()
    });
    progress.finish_and_clear();
    let mut summary = Summary {
        scenarios: scenarios.len(),
        runs: 0,
        passed: 0,
        failed: 0,
        blessed: Vec::new(),
        results: Vec::new(),
    };
    for result in results {
        let judged = result?;
        let r = judged.summary;
        summary.runs += 1;
        if r.passed {
            summary.passed += 1;
        } else {
            summary.failed += 1;
        }
        summary.blessed.extend(judged.blessed);
        // A sweep prints only what failed; a single run prints every scenario.
        if seeds == 1 || !r.passed {
            let mark = if r.passed { "ok  " } else { "FAIL" };
            println!(
                "{mark} {:<44} seed {:<6} {:>12} µs {:>7} frames  trace {}",
                r.name, r.seed, r.end_time_us, r.frames_emitted, r.trace_hash
            );
            for problem in &r.problems {
                println!("     {}", problem.replace('\n', "\n     "));
            }
        }
        summary.results.push(r);
    }
    for path in &summary.blessed {
        println!("blessed {path}");
    }
    let json = serde_json::to_vec_pretty(&summary)?;
    write_atomic(&options.out.join("summary.json"), &json)?;
    println!(
        "{} scenarios, {} runs: {} passed, {} failed{}; output in {}",
        summary.scenarios,
        summary.runs,
        summary.passed,
        summary.failed,
        if options.bless {
            format!(" ({} golden files written)", summary.blessed.len())
        } else {
            String::new()
        },
        options.out.display()
    );
    Ok(if summary.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Writes the scenario files' JSON Schema where editors and the tidy test find it.
pub fn write_schema() -> anyhow::Result<()> {
    let path = workspace_root().join("scenarios/schema.json");
    write_atomic(&path, harness::scenario::json_schema().as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

fn stack_name(stack: StackKind) -> &'static str {
    match stack {
        StackKind::Smoltcp => "smoltcp",
        StackKind::Lwip => "lwip",
    }
}

/// Parses `--stack`.
pub fn parse_stack(text: &str) -> Result<StackKind, String> {
    match text {
        "smoltcp" => Ok(StackKind::Smoltcp),
        "lwip" => Ok(StackKind::Lwip),
        other => Err(format!("`{other}` is not a stack: smoltcp or lwip")),
    }
}

/// The scenario with every host on `stack`.
fn on_stack(scenario: &Scenario, stack: StackKind) -> Scenario {
    let mut scenario = scenario.clone();
    for host in &mut scenario.config.hosts {
        host.stack = stack;
    }
    scenario
}

/// Runs one scenario in a child process of this program, so that a stack that aborts the
/// process (an lwIP assertion calls `abort()`) fails that run, with its seed and message,
/// while the other runs go on.
pub(crate) fn run_in_child(
    scenario: &Scenario,
    seed: u64,
    stack: StackKind,
    out: &Path,
) -> anyhow::Result<Judged> {
    let exe = std::env::current_exe().context("finding this program")?;
    let out = out.join(stack_name(stack));
    let output = std::process::Command::new(exe)
        .args([
            "scenario-child",
            &scenario.name,
            "--seed",
            &seed.to_string(),
        ])
        .args(["--stack", stack_name(stack), "--out"])
        .arg(&out)
        .stdin(std::process::Stdio::null())
        .output()
        .context("starting a child process")?;
    let reproduce = format!(
        "reproduce: cargo xtask scenarios --stack {} --filter {} --seed {seed}",
        stack_name(stack),
        scenario.name
    );
    if output.status.success() {
        let summary: RunSummary =
            serde_json::from_slice(&output.stdout).context("reading the child's result")?;
        return Ok(Judged {
            summary,
            blessed: Vec::new(),
        });
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last_lines: Vec<&str> = stderr.lines().rev().take(5).collect();
    let how = match std::os::unix::process::ExitStatusExt::signal(&output.status) {
        Some(signal) => format!("the process died of signal {signal}"),
        None => format!("the process exited with {}", output.status),
    };
    Ok(Judged {
        summary: RunSummary {
            name: scenario.name.clone(),
            seed,
            passed: false,
            outcome: format!("aborted: {how}"),
            problems: vec![
                format!(
                    "{how} running on {}; its last words:\n{}",
                    stack_name(stack),
                    last_lines.into_iter().rev().collect::<Vec<_>>().join("\n")
                ),
                reproduce,
            ],
            end_time_us: 0,
            frames_emitted: 0,
            frames_delivered: 0,
            trace_hash: String::new(),
            expectations: Vec::new(),
            apps: Vec::new(),
        },
        blessed: Vec::new(),
    })
}

/// The child side of [`run_in_child`]: runs one scenario on `stack` and prints its summary as
/// JSON on standard output.
pub fn child(name: &str, seed: u64, stack: StackKind, out: &Path) -> anyhow::Result<()> {
    let scenarios =
        load_all(&workspace_root()).map_err(|errors| anyhow::anyhow!("{}", errors.join("\n")))?;
    let scenario = scenarios
        .iter()
        .find(|s| s.name == name)
        .with_context(|| format!("no scenario called {name}"))?;
    let judged = run_one(&on_stack(scenario, stack), seed, out, false, true, false)?;
    println!("{}", serde_json::to_string(&judged.summary)?);
    Ok(())
}
