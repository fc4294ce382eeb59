//! `wirelab run PATH...`: the scenario files found under the paths, in parallel, then the conformance scripts, with one line per run, a summary, and `summary.json`; exit 0 when all pass, 1 when any fails, 2 on bad input.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use serde::Serialize;
use wirelab::scenario::folder::{self, Found};
use wirelab::scenario::format::parse_stack;
use wirelab::scenario::golden::write_atomic;
use wirelab::scenario::runner::{self, Judged, RunSummary, ScriptResult, Settings};
use wirelab::scenario::script::Script;
use wirelab::{Registry, Scenario};

use crate::BAD_INPUT;

/// What `wirelab run` (and `cargo xtask scenarios`) takes.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct RunArgs {
    /// Scenario files, .pkt scripts, or folders of them. A scenario's name is its path under
    /// the folder it was found in (the nearest one with a golden/ beside it).
    pub paths: Vec<PathBuf>,
    /// Where the goldens are (default: golden/ beside the scenarios' folder).
    #[arg(long)]
    pub golden: Option<PathBuf>,
    /// Only scenarios and scripts whose name contains this.
    #[arg(long)]
    pub filter: Option<String>,
    /// Run with this seed instead of each scenario's own (goldens are compared only at a
    /// scenario's own seed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run each scenario with this many consecutive seeds, from --seed or its own, checking
    /// expectations and oracles on every one.
    #[arg(long)]
    pub seeds: Option<u64>,
    /// Worker threads (the output is the same for any number).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Where captures, traces and the summary go.
    #[arg(long, default_value = "target/wirelab")]
    pub out: PathBuf,
    /// Rewrite the goldens with what this run produced.
    #[arg(long)]
    pub bless: bool,
    /// Run every host on this registered stack instead of the scenario's own (`wirelab
    /// stacks` lists them). Its goldens are <name>@<stack>.* (with --bless, written there).
    #[arg(long)]
    pub stack: Option<String>,
    /// Run every scenario on two stacks (like smoltcp,lwip) and report their verdicts and
    /// normalized differences (text, and <out>/diff.json).
    #[arg(long)]
    pub diff: Option<String>,
    /// Test hook: make an lwIP assertion fire in the child running this scenario.
    #[arg(long, hide = true)]
    pub test_lwip_assert: Option<String>,
}

/// The paths as a command line shows them.
pub fn shown_paths(paths: &[PathBuf]) -> String {
    let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    shown.join(" ")
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

/// Everything a run needs that its arguments imply: what was found and how to play it.
pub struct Plan {
    pub found: Found,
    pub settings: Settings,
    /// The root each scenario was found in (for a child process to read it again), by index.
    pub roots: Vec<PathBuf>,
}

/// Reads everything under `args.paths`, prints each broken file, and keeps what matches the
/// filter. `Err` carries the exit code when there is nothing to do.
pub fn plan(args: &RunArgs, stacks: &Registry, command: &str) -> Result<Plan, ExitCode> {
    if args.paths.is_empty() {
        eprintln!("error: give scenario files, .pkt scripts or folders of them, like `wirelab run scenarios/`");
        return Err(ExitCode::from(BAD_INPUT));
    }
    let mut found = folder::find(&args.paths, stacks);
    for error in &found.errors {
        eprintln!("error: {error}\n");
    }
    if !found.errors.is_empty() {
        eprintln!(
            "{} file(s) could not be read; the others run",
            found.errors.len()
        );
    }
    if let Some(filter) = &args.filter {
        found.retain_matching(filter);
    }
    if found.scenarios.is_empty() && found.scripts.is_empty() {
        if found.errors.is_empty() {
            eprintln!(
                "error: no scenario or script under {}{}; names are paths under the folder they are found in (like tcp/handshake)",
                shown_paths(&args.paths),
                args.filter
                    .as_deref()
                    .map(|f| format!(" matches the filter {f:?}"))
                    .unwrap_or_default()
            );
        }
        return Err(ExitCode::from(BAD_INPUT));
    }
    let golden_root = args.golden.clone().unwrap_or_else(|| {
        found
            .first_root
            .as_deref()
            .map_or_else(|| PathBuf::from(folder::GOLDEN_DIR), folder::golden_of)
    });
    let mut settings = Settings::new(golden_root);
    settings.out = Some(args.out.clone());
    settings.bless = args.bless;
    settings.command = Some(command.to_string());
    settings.test_lwip_assert = args.test_lwip_assert.clone();
    let roots = found
        .scenarios
        .iter()
        .map(|s| root_from_name(&s.path, &s.name))
        .collect();
    Ok(Plan {
        found,
        settings,
        roots,
    })
}

/// The folder a scenario named `name` was found in, given its file: the file's path with the
/// name's folders taken off.
fn root_from_name(path: &Path, name: &str) -> PathBuf {
    let mut root = path.to_path_buf();
    for _ in name.split('/') {
        if !root.pop() {
            break;
        }
    }
    root
}

/// Checks a stack given on the command line: registered and available here. Real-time stacks
/// (the kernel) cannot be blessed, and their stale namespaces are removed first.
pub fn check_stack(name: &str, stacks: &Registry, bless: bool) -> Result<String, String> {
    let name = parse_stack(name, stacks)?;
    let factory = stacks.get(&name).ok_or("registered")?;
    factory
        .available()
        .map_err(|missing| format!("{name}: {missing}"))?;
    if factory.real_time() {
        if bless {
            return Err(format!(
                "runs on {name} are real-time and cannot be reproduced, so they have no goldens: leave out --bless"
            ));
        }
        for stale in wirelab::backends::linux::netns::remove_stale_namespaces() {
            eprintln!("removed {stale}, left behind by a process that no longer runs");
        }
    }
    Ok(name)
}

/// The scenarios that can run with every host on `stack`; prints a `skip` line with the reason
/// for each of the others.
pub fn runnable_on(
    scenarios: Vec<(Scenario, PathBuf)>,
    stack: &str,
    stacks: &Registry,
) -> Vec<(Scenario, PathBuf)> {
    scenarios
        .into_iter()
        .filter(|(s, _)| match runner::cannot_run_on(s, stack, stacks) {
            None => true,
            Some(why) => {
                println!("skip {:<44} not on {stack}: {why}", s.name);
                false
            }
        })
        .collect()
}

/// `wirelab run`: the scenarios, then (for a plain run at the scripts' own seed) the scripts on
/// every available stack that runs in virtual time (or the one `--stack` names). The exit code
/// is the worst of the two, and 2 when a file could not be read.
pub fn run(args: RunArgs, stacks: &Registry, command: &str) -> anyhow::Result<ExitCode> {
    let plan = match plan(&args, stacks, command) {
        Ok(plan) => plan,
        Err(code) => return Ok(code),
    };
    let broken_files = !plan.found.errors.is_empty();
    let stack = match args
        .stack
        .as_deref()
        .map(|s| check_stack(s, stacks, args.bless))
    {
        None => None,
        Some(Ok(stack)) => Some(stack),
        Some(Err(why)) => {
            eprintln!("error: {why}");
            return Ok(ExitCode::from(BAD_INPUT));
        }
    };
    let seeds = args.seeds.unwrap_or(1);
    if seeds == 0 {
        eprintln!("error: --seeds must be at least 1");
        return Ok(ExitCode::from(BAD_INPUT));
    }
    if args.bless && (seeds > 1 || args.seed.is_some()) {
        eprintln!("error: --bless records goldens at each scenario's own seed; leave out --seed and --seeds");
        return Ok(ExitCode::from(BAD_INPUT));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.jobs.unwrap_or(0))
        .build()
        .context("starting the worker threads")?;
    let Plan {
        found,
        settings,
        roots,
    } = plan;
    let scenarios: Vec<(Scenario, PathBuf)> = found.scenarios.into_iter().zip(roots).collect();
    if let Some(pair) = &args.diff {
        if args.bless || args.stack.is_some() || seeds > 1 {
            eprintln!("error: --diff runs each scenario once on each of its two stacks; leave out --bless, --stack and --seeds");
            return Ok(ExitCode::from(BAD_INPUT));
        }
        let pair = match parse_pair(pair, stacks) {
            Ok(pair) => pair,
            Err(why) => {
                eprintln!("error: {why}");
                return Ok(ExitCode::from(BAD_INPUT));
            }
        };
        let code = crate::diff::run(&pool, scenarios, pair, args.seed, &settings, stacks)?;
        return Ok(worst(code, broken_files));
    }
    let with_scripts =
        seeds == 1 && args.seed.is_none() && !args.bless && args.test_lwip_assert.is_none();
    let scenarios = match &stack {
        Some(stack) => runnable_on(scenarios, stack, stacks),
        None => scenarios,
    };
    let mut code = ExitCode::SUCCESS;
    // A filter that names scripts only (`--filter rst_in`) runs just those scripts.
    if !scenarios.is_empty() || !with_scripts || found.scripts.is_empty() {
        code = run_scenarios(
            &pool,
            &scenarios,
            stack.as_deref(),
            &args,
            &settings,
            stacks,
        )?;
    }
    if with_scripts && !found.scripts.is_empty() {
        let backends = match &stack {
            Some(stack) => vec![stack.clone()],
            None => virtual_time_stacks(stacks),
        };
        let results = pool.install(|| run_scripts(&found.scripts, &backends, stacks, &args.out));
        if !report_scripts(&results) {
            code = ExitCode::from(1);
        }
    }
    Ok(worst(code, broken_files))
}

/// `code`, or 2 when some file could not be read.
fn worst(code: ExitCode, broken_files: bool) -> ExitCode {
    if broken_files {
        ExitCode::from(BAD_INPUT)
    } else {
        code
    }
}

/// Parses `--diff A,B`: two different registered stacks.
pub fn parse_pair(text: &str, stacks: &Registry) -> Result<(String, String), String> {
    let (a, b) = text.split_once(',').ok_or_else(|| {
        format!("`{text}`: give two stacks separated by a comma, like smoltcp,lwip")
    })?;
    let (a, b) = (
        parse_stack(a.trim(), stacks)?,
        parse_stack(b.trim(), stacks)?,
    );
    if a == b {
        return Err(format!("`{text}`: compare two different stacks"));
    }
    Ok((a, b))
}

/// The stacks scripts run on by default: every registered stack available here that runs in
/// virtual time (the kernel plays scripts in real time, so only `--stack linux` asks for it).
pub fn virtual_time_stacks(stacks: &Registry) -> Vec<String> {
    let mut names = Vec::new();
    for name in stacks.names() {
        let Some(factory) = stacks.get(name) else {
            continue;
        };
        if factory.real_time() {
            continue;
        }
        match factory.available() {
            Ok(()) => names.push(name.to_string()),
            Err(missing) => eprintln!("scripts: {name} not run: {missing}"),
        }
    }
    names
}

fn run_scenarios(
    pool: &rayon::ThreadPool,
    scenarios: &[(Scenario, PathBuf)],
    stack: Option<&str>,
    args: &RunArgs,
    settings: &Settings,
    stacks: &Registry,
) -> anyhow::Result<ExitCode> {
    let seeds = args.seeds.unwrap_or(1);
    let mut settings = settings.clone();
    settings.all_artifacts = seeds == 1;
    if let Some(stack) = stack {
        settings.out = settings.out.map(|out| out.join(stack));
    }
    let jobs: Vec<(&Scenario, &Path, u64)> = scenarios
        .iter()
        .flat_map(|(s, root)| {
            let base = args.seed.unwrap_or(s.config.seed);
            (0..seeds).map(move |i| (s, root.as_path(), base.wrapping_add(i)))
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
    let results: Vec<Judged> = pool.install(|| {
        jobs.par_iter()
            .map(|(s, root, seed)| {
                let judged = runner::play_scenario(s, root, stack, *seed, stacks, &settings);
                progress.inc(1);
                judged
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
    for judged in results {
        let r = judged.summary;
        summary.runs += 1;
        if r.passed {
            summary.passed += 1;
        } else {
            summary.failed += 1;
        }
        summary
            .blessed
            .extend(judged.blessed.iter().map(|p| p.display().to_string()));
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
    write_atomic(&args.out.join("summary.json"), &json)
        .with_context(|| format!("writing {}", args.out.join("summary.json").display()))?;
    println!(
        "{} scenarios, {} runs: {} passed, {} failed{}; output in {}",
        summary.scenarios,
        summary.runs,
        summary.passed,
        summary.failed,
        if args.bless {
            format!(" ({} golden files written)", summary.blessed.len())
        } else {
            String::new()
        },
        args.out.display()
    );
    Ok(if summary.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Plays every script on every backend (in parallel; each in a child process where its stack
/// needs one) and writes `<out>/scripts/<name>@<backend>.pcapng` and `.trace`.
pub fn run_scripts(
    scripts: &[Script],
    backends: &[String],
    stacks: &Registry,
    out: &Path,
) -> Vec<ScriptResult> {
    let jobs: Vec<(&Script, &str)> = scripts
        .iter()
        .flat_map(|s| backends.iter().map(move |b| (s, b.as_str())))
        .collect();
    jobs.par_iter()
        .map(|(script, backend)| runner::play_script(script, backend, stacks, Some(out)))
        .collect()
}

/// Prints one line per script run and a summary; returns whether every run was as the scripts
/// say.
pub fn report_scripts(results: &[ScriptResult]) -> bool {
    let mut unexpected = 0;
    let mut known = 0;
    let mut not_run = 0;
    for r in results {
        let message = r.message.as_deref().unwrap_or_default();
        match r.verdict.as_str() {
            "passed" => println!("ok      script {}@{}", r.name, r.backend),
            "not_run" => {
                not_run += 1;
                println!("not run script {}@{}: {message}", r.name, r.backend);
            }
            "known_failure" => {
                known += 1;
                println!(
                    "finding script {}@{}: {} {message}",
                    r.name,
                    r.backend,
                    r.requirement.as_deref().unwrap_or_default(),
                );
            }
            _ => {
                unexpected += 1;
                println!("FAILED  script {}@{}\n{message}", r.name, r.backend);
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
