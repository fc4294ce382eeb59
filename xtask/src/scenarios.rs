//! `cargo xtask scenarios`: runs the scenario files in parallel, writes captures, traces, snapshots and a JSON summary, compares them with the goldens (the scenario's own, or a stack's `@<stack>` ones), and runs differential comparisons between two backends.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use harness::check::{Checked, ExpectationResult};
use harness::config::StackKind;
use harness::diff::{compare, AppOutcome, Comparison, Names, RunSide};
use harness::golden::{
    compare_capture, compare_snapshot, golden_paths, golden_variant, snapshot_file_text,
    write_atomic,
};
use harness::reference::{reference_verdict, ReferenceVerdict};
use harness::scenario::{check_on, discover, load, stack_name, Scenario};
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
    /// Run every scenario on both stacks and compare the runs.
    pub diff: Option<(StackKind, StackKind)>,
    /// A test hook: the child running this scenario on lwIP makes its first host misuse
    /// lwIP's raw API so that an lwIP assertion fires (see `stack::lwip::TEST_ASSERT_ENV`).
    pub test_lwip_assert: Option<String>,
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
    apps: Vec<AppOutcome>,
    /// What turmoil's application-level reference says of this run (differential runs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reference: Option<ReferenceVerdict>,
}

/// What a child process reports to its parent.
#[derive(Serialize, Deserialize)]
struct ChildReport {
    summary: RunSummary,
    blessed: Vec<String>,
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

/// The workspace's root, where `scenarios/` and `golden/` live, wherever xtask runs from.
pub(crate) fn workspace_root() -> PathBuf {
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

/// `--stack <name>` when a run moves hosts onto a stack, for the commands we print.
fn stack_option(stack: Option<StackKind>) -> String {
    stack
        .map(|s| format!(" --stack {}", stack_name(s)))
        .unwrap_or_default()
}

fn reproduce(name: &str, seed: u64, stack: Option<StackKind>) -> String {
    format!(
        "cargo xtask scenarios{} --filter {name} --seed {seed}",
        stack_option(stack)
    )
}

/// What a run does besides running: bless or compare goldens, write artifacts, ask turmoil.
#[derive(Clone, Copy)]
struct RunFlags {
    bless: bool,
    write_artifacts: bool,
    goldens: bool,
    reference: bool,
}

/// Runs one scenario at one seed, with every host on `stack` (as written for `None`).
/// Goldens (the scenario's own, or the stack's `@<stack>` set) are compared (or blessed)
/// only at the scenario's own seed, the one they were recorded with.
fn run_one(
    scenario: &Scenario,
    stack: Option<StackKind>,
    seed: u64,
    out: &Path,
    flags: RunFlags,
) -> anyhow::Result<Judged> {
    let RunFlags {
        bless,
        write_artifacts,
        goldens,
        reference,
    } = flags;
    let checked: Checked = check_on(scenario, stack, seed, &RunOptions::default())
        .with_context(|| format!("scenario {}", scenario.name))?;
    // turmoil replays the applications at the scenario's own seed; other seeds change only
    // the impairments, which the reference leaves out.
    let reference =
        reference.then(|| reference_verdict(&scenario.on_stack(stack), &checked.report));
    let mut problems = checked.problems.clone();
    let mut blessed = Vec::new();
    let snapshot = checked.snapshot();
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
        golden_variant(scenario, stack),
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
                reproduce(&scenario.name, seed, stack)
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
                "snapshot {mismatch}\n  review: cargo insta review (after cargo test), or bless: cargo xtask scenarios{} --filter {} --bless",
                stack_option(stack),
                scenario.name
            ));
        }
    }
    if !checked.passed() {
        problems.push(format!(
            "reproduce: {}",
            reproduce(&scenario.name, seed, stack)
        ));
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
            apps: checked.report.apps.iter().map(AppOutcome::from).collect(),
            reference,
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
    let wanted: Vec<StackKind> = match options.diff {
        Some((a, b)) => vec![a, b],
        None => options.stack.into_iter().collect(),
    };
    if wanted.contains(&StackKind::Lwip) {
        if let Err(missing) = stack::lwip::available() {
            eprintln!("error: lwip: {missing}");
            return Ok(ExitCode::from(2));
        }
    }
    if scenarios.is_empty() {
        eprintln!(
            "error: no scenario or script matches the filter {:?}; names are paths under scenarios/ (like tcp/handshake) and scenarios/scripts/ (like tcp/passive_open)",
            options.filter.unwrap_or_default()
        );
        return Ok(ExitCode::from(2));
    }
    let scenarios = if wanted.contains(&StackKind::Linux) {
        if let Err(why) = crate::tap::linux_preflight(options.bless) {
            eprintln!("error: {why}");
            return Ok(ExitCode::from(2));
        }
        crate::tap::runnable_on_linux(scenarios)
    } else {
        scenarios
    };
    let seeds = options.seeds.unwrap_or(1);
    if seeds == 0 {
        eprintln!("error: --seeds must be at least 1");
        return Ok(ExitCode::from(2));
    }
    if options.diff.is_some() && (options.bless || options.stack.is_some() || seeds > 1) {
        eprintln!("error: --diff runs each scenario once on each of its two stacks; leave out --bless, --stack and --seeds");
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
    if let Some(pair) = options.diff {
        return run_diff(&pool, &scenarios, pair, &options);
    }
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
                    None => run_one(
                        s,
                        None,
                        *seed,
                        &options.out,
                        RunFlags {
                            bless: options.bless,
                            write_artifacts,
                            goldens: true,
                            reference: false,
                        },
                    ),
                    Some(stack) => run_in_child(s, *seed, stack, &options, write_artifacts),
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

/// Parses `--diff A,B`: two different stacks.
pub fn parse_pair(text: &str) -> Result<(StackKind, StackKind), String> {
    let (a, b) = text.split_once(',').ok_or_else(|| {
        format!("`{text}`: give two stacks separated by a comma, like smoltcp,lwip")
    })?;
    let parse_stack = harness::scenario::parse_stack;
    let (a, b) = (parse_stack(a.trim())?, parse_stack(b.trim())?);
    if a == b {
        return Err(format!("`{text}`: compare two different stacks"));
    }
    Ok((a, b))
}

/// Runs one scenario in a child process of this program, so that a stack that aborts the
/// process (an lwIP assertion calls `abort()`) fails that run, with its seed and message,
/// while the other runs go on. The child compares (or, with `--bless`, writes) the stack's
/// goldens at the scenario's own seed.
pub(crate) fn run_in_child(
    scenario: &Scenario,
    seed: u64,
    stack: StackKind,
    options: &Options,
    write_artifacts: bool,
) -> anyhow::Result<Judged> {
    let exe = std::env::current_exe().context("finding this program")?;
    let out = options.out.join(stack_name(stack));
    let mut command = std::process::Command::new(exe);
    command
        .args([
            "scenario-child",
            &scenario.name,
            "--seed",
            &seed.to_string(),
        ])
        .args(["--stack", stack_name(stack), "--out"])
        .arg(&out)
        .stdin(std::process::Stdio::null());
    if options.bless {
        command.arg("--bless");
    }
    if !write_artifacts {
        command.arg("--no-artifacts");
    }
    if options.diff.is_some() {
        command.arg("--reference");
    }
    command.env_remove(stack::lwip::TEST_ASSERT_ENV);
    if options.test_lwip_assert.as_deref() == Some(scenario.name.as_str()) {
        if let Some(host) = scenario.config.hosts.first() {
            command.env(stack::lwip::TEST_ASSERT_ENV, &host.name);
        }
    }
    let output = command.output().context("starting a child process")?;
    let reproduce = format!(
        "reproduce: {}",
        reproduce(&scenario.name, seed, Some(stack))
    );
    if output.status.success() {
        let report: ChildReport =
            serde_json::from_slice(&output.stdout).context("reading the child's result")?;
        return Ok(Judged {
            summary: report.summary,
            blessed: report.blessed,
        });
    }
    let how = format!(
        "the process {}",
        harness::child::how_it_ended(output.status)
    );
    Ok(Judged {
        summary: RunSummary {
            name: scenario.name.clone(),
            seed,
            passed: false,
            outcome: format!("aborted: {how}"),
            problems: vec![
                format!(
                    "{how} running on {} at seed {seed}; its last words:\n{}",
                    stack_name(stack),
                    harness::child::last_words(&output, 5)
                ),
                reproduce,
            ],
            end_time_us: 0,
            frames_emitted: 0,
            frames_delivered: 0,
            trace_hash: String::new(),
            expectations: Vec::new(),
            apps: Vec::new(),
            reference: None,
        },
        blessed: Vec::new(),
    })
}

/// The child side of [`run_in_child`]: runs one scenario on `stack` and prints its summary
/// (and what it blessed) as JSON on standard output.
pub fn child(
    name: &str,
    seed: u64,
    stack: StackKind,
    out: &Path,
    bless: bool,
    write_artifacts: bool,
    reference: bool,
) -> anyhow::Result<()> {
    let scenarios =
        load_all(&workspace_root()).map_err(|errors| anyhow::anyhow!("{}", errors.join("\n")))?;
    let scenario = scenarios
        .iter()
        .find(|s| s.name == name)
        .with_context(|| format!("no scenario called {name}"))?;
    if stack == StackKind::Linux {
        crate::tap::remove_namespaces_on_signals()?;
    }
    let judged = run_one(
        scenario,
        Some(stack),
        seed,
        out,
        RunFlags {
            bless,
            write_artifacts,
            // Real-time runs on the kernel are not reproducible: they have no goldens.
            goldens: stack != StackKind::Linux,
            reference,
        },
    )?;
    let report = ChildReport {
        summary: judged.summary,
        blessed: judged.blessed,
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// One scenario of a differential run.
#[derive(Serialize)]
struct DiffEntry {
    name: String,
    seed: u64,
    /// Each backend's own verdict: its run judged by the scenario's checks and its goldens.
    runs: Vec<RunSummary>,
    comparison: Comparison,
}

#[derive(Serialize)]
struct DiffReport {
    stacks: [String; 2],
    scenarios: Vec<DiffEntry>,
    /// Scenarios each backend passed.
    passed: [usize; 2],
    /// For each fact kind (the part of a difference's name after the connection or host),
    /// in how many scenarios it differed.
    differing_facts: std::collections::BTreeMap<String, usize>,
    /// Scenarios where each backend's applications disagree with turmoil's reference.
    reference_disagreements: [usize; 2],
}

/// The captures a child wrote for one run, by segment, in file-name order.
fn read_captures(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut captures = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return captures;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let is_capture = path
            .extension()
            .is_some_and(|e| e == "pcapng" || e == "pcap");
        if let (true, Some(stem), Ok(bytes)) = (
            is_capture,
            path.file_stem().and_then(|s| s.to_str()),
            std::fs::read(&path),
        ) {
            captures.push((stem.to_string(), bytes));
        }
    }
    captures
}

/// `--diff A,B`: every scenario on both stacks (each run in a child process), each backend's
/// verdict, and the normalized comparison of the two runs, as text (printed, and
/// `<out>/diff.txt`) and JSON (`<out>/diff.json`). Exit status 1 when a run failed its
/// checks; differences alone are findings, not failures.
fn run_diff(
    pool: &rayon::ThreadPool,
    scenarios: &[Scenario],
    (a, b): (StackKind, StackKind),
    options: &Options,
) -> anyhow::Result<ExitCode> {
    let jobs: Vec<(&Scenario, StackKind)> =
        scenarios.iter().flat_map(|s| [(s, a), (s, b)]).collect();
    let results: Vec<anyhow::Result<Judged>> = pool.install(|| {
        jobs.par_iter()
            .map(|(s, stack)| {
                let seed = options.seed.unwrap_or(s.config.seed);
                run_in_child(s, seed, *stack, options, true)
            })
            .collect()
    });
    let mut results = results.into_iter();
    let mut report = DiffReport {
        stacks: [stack_name(a).to_string(), stack_name(b).to_string()],
        scenarios: Vec::new(),
        passed: [0, 0],
        differing_facts: std::collections::BTreeMap::new(),
        reference_disagreements: [0, 0],
    };
    let mut text = String::new();
    for scenario in scenarios {
        let (Some(ra), Some(rb)) = (results.next(), results.next()) else {
            break;
        };
        let (ra, rb) = (ra?.summary, rb?.summary);
        let side = |stack: StackKind, r: &RunSummary| RunSide {
            stack: stack_name(stack).to_string(),
            passed: r.passed,
            outcome: r.outcome.clone(),
            end_time_us: r.end_time_us,
            apps: r.apps.clone(),
            captures: if r.seed == scenario.config.seed {
                read_captures(&options.out.join(stack_name(stack)).join(&scenario.name))
            } else {
                read_captures(
                    &options
                        .out
                        .join(stack_name(stack))
                        .join(&scenario.name)
                        .join(format!("seed-{}", r.seed)),
                )
            },
        };
        let comparison = compare(
            &side(a, &ra),
            &side(b, &rb),
            &Names::of_world(&scenario.config),
        );
        report.passed[0] += usize::from(ra.passed);
        report.passed[1] += usize::from(rb.passed);
        let mut kinds: Vec<String> = comparison
            .differences
            .iter()
            .map(|d| fact_kind(&d.fact))
            .collect();
        kinds.sort();
        kinds.dedup();
        for kind in kinds {
            *report.differing_facts.entry(kind).or_insert(0) += 1;
        }
        let _ = std::fmt::Write::write_fmt(
            &mut text,
            format_args!(
                "== {} (seed {})\n{}",
                scenario.name,
                ra.seed,
                comparison.render()
            ),
        );
        for (stack, r) in [(a, &ra), (b, &rb)] {
            if let Some(reference) = &r.reference {
                let _ = std::fmt::Write::write_fmt(
                    &mut text,
                    format_args!(
                        "  turmoil reference, {}: {}\n",
                        stack_name(stack),
                        reference.to_string().replace('\n', "\n    ")
                    ),
                );
                if matches!(reference, ReferenceVerdict::Disagree { .. }) {
                    report.reference_disagreements[usize::from(stack == b)] += 1;
                }
            }
            for problem in &r.problems {
                let _ = std::fmt::Write::write_fmt(
                    &mut text,
                    format_args!(
                        "  {} problem: {}\n",
                        stack_name(stack),
                        problem.replace('\n', "\n    ")
                    ),
                );
            }
        }
        report.scenarios.push(DiffEntry {
            name: scenario.name.clone(),
            seed: ra.seed,
            runs: vec![ra, rb],
            comparison,
        });
    }
    let _ = std::fmt::Write::write_fmt(
        &mut text,
        format_args!(
            "== summary: {} scenarios; {} passed {}, {} passed {}; disagreements with the turmoil reference: {} {}, {} {}\nfacts that differ, by the number of scenarios where they do:\n",
            report.scenarios.len(),
            stack_name(a),
            report.passed[0],
            stack_name(b),
            report.passed[1],
            stack_name(a),
            report.reference_disagreements[0],
            stack_name(b),
            report.reference_disagreements[1]
        ),
    );
    let mut by_count: Vec<(&String, &usize)> = report.differing_facts.iter().collect();
    by_count.sort_by(|x, y| y.1.cmp(x.1).then(x.0.cmp(y.0)));
    for (fact, count) in by_count {
        let _ = std::fmt::Write::write_fmt(&mut text, format_args!("  {count:>3}  {fact}\n"));
    }
    print!("{text}");
    write_atomic(&options.out.join("diff.txt"), text.as_bytes())?;
    write_atomic(
        &options.out.join("diff.json"),
        &serde_json::to_vec_pretty(&report)?,
    )?;
    println!(
        "differential report in {} and {}",
        options.out.join("diff.txt").display(),
        options.out.join("diff.json").display()
    );
    let all_passed = report.passed == [report.scenarios.len(); 2];
    Ok(if all_passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A difference's kind, for the summary: its name without the host or connection it is
/// about (`tcp 10.0.0.1:eph1 > 10.0.0.2:5001: SYN options` is `tcp: SYN options`).
fn fact_kind(fact: &str) -> String {
    if fact.starts_with("run: ") {
        return fact.to_string();
    }
    let mut words = fact.splitn(2, ' ');
    let first = words.next().unwrap_or_default();
    let rest = words.next().unwrap_or_default();
    let what = rest.rsplit_once(": ").map_or(rest, |(_, w)| w);
    format!("{first}: {what}")
}
