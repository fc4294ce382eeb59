//! `cargo xtask scenarios`: runs the library in parallel, writes captures, traces and a JSON summary, and compares captures with the goldens.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use harness::golden::{compare_capture, write_atomic};
use harness::library::{builtin, NamedRun};
use harness::sim::{run as run_world, RunOptions};
use rayon::prelude::*;
use serde::Serialize;

pub struct Options {
    pub filter: Option<String>,
    pub seed: Option<u64>,
    pub jobs: Option<usize>,
    pub out: PathBuf,
    pub bless: bool,
}

/// The seed scenarios run with unless `--seed` says otherwise.
const DEFAULT_SEED: u64 = 1;

#[derive(Serialize)]
struct ScenarioResult {
    name: String,
    seed: u64,
    passed: bool,
    outcome: String,
    problems: Vec<String>,
    end_time_us: u64,
    frames_emitted: u64,
    frames_delivered: u64,
    trace_hash: String,
    apps: Vec<harness::apps::AppReport>,
}

fn golden_root() -> PathBuf {
    // xtask runs from anywhere inside the workspace; the goldens live at its root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .join("golden")
}

fn run_one(
    scenario: &NamedRun,
    seed: u64,
    out: &Path,
    bless: bool,
) -> anyhow::Result<ScenarioResult> {
    let mut config = scenario.config.clone();
    config.seed = seed;
    let report = run_world(config, &scenario.apps, &RunOptions::default())
        .with_context(|| format!("scenario {}", scenario.name))?;
    let dir = out.join(scenario.name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut problems = Vec::new();
    if !report.outcome.is_success() {
        problems.push(format!("run {}", report.outcome));
    }
    for app in &report.apps {
        for (time, error) in &app.errors {
            problems.push(format!(
                "{} on {} at {time} µs: {error}",
                app.kind, app.host
            ));
        }
    }
    let trace = report.trace_text();
    write_atomic(&dir.join("trace.txt"), trace.as_bytes())?;
    for capture in &report.captures {
        let Some(bytes) = &capture.bytes else {
            continue;
        };
        let file = format!("{}.pcapng", capture.segment);
        write_atomic(&dir.join(&file), bytes)?;
        let golden = golden_root().join(scenario.name).join(&file);
        if bless {
            if std::fs::read(&golden).ok().as_deref() != Some(&bytes[..]) {
                write_atomic(&golden, bytes)
                    .with_context(|| format!("blessing {}", golden.display()))?;
            }
        } else if seed == DEFAULT_SEED {
            if let Err(mismatch) = compare_capture(&golden, bytes) {
                problems.push(format!(
                    "{mismatch}\n  reproduce: cargo xtask scenarios --filter {} --seed {seed}",
                    scenario.name
                ));
            }
        }
    }
    Ok(ScenarioResult {
        name: scenario.name.to_string(),
        seed,
        passed: problems.is_empty(),
        outcome: report.outcome.to_string(),
        problems,
        end_time_us: report.stats.end_time_us,
        frames_emitted: report.stats.frames_emitted,
        frames_delivered: report.stats.frames_delivered,
        trace_hash: format!("{:016x}", report.trace_hash()),
        apps: report.apps.clone(),
    })
}

pub fn run(options: Options) -> anyhow::Result<ExitCode> {
    let seed = options.seed.unwrap_or(DEFAULT_SEED);
    let scenarios: Vec<NamedRun> = builtin(seed)
        .into_iter()
        .filter(|s| options.filter.as_deref().is_none_or(|f| s.name.contains(f)))
        .collect();
    if scenarios.is_empty() {
        anyhow::bail!(
            "no scenario matches the filter {:?}",
            options.filter.unwrap_or_default()
        );
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(options.jobs.unwrap_or(0))
        .build()
        .context("starting the worker threads")?;
    let results: Vec<anyhow::Result<ScenarioResult>> = pool.install(|| {
        scenarios
            .par_iter()
            .map(|s| run_one(s, seed, &options.out, options.bless))
            .collect()
    });
    let mut summary = Vec::new();
    let mut failed = 0;
    for result in results {
        let result = result?;
        let mark = if result.passed { "ok  " } else { "FAIL" };
        println!(
            "{mark} {:<40} {:>10} µs {:>7} frames  trace {}",
            result.name, result.end_time_us, result.frames_emitted, result.trace_hash
        );
        for problem in &result.problems {
            println!("     {}", problem.replace('\n', "\n     "));
        }
        failed += usize::from(!result.passed);
        summary.push(result);
    }
    let json = serde_json::to_vec_pretty(&summary)?;
    write_atomic(&options.out.join("summary.json"), &json)?;
    println!(
        "{} scenarios: {} passed, {} failed{}; output in {}",
        summary.len(),
        summary.len() - failed,
        failed,
        if options.bless {
            " (goldens blessed)"
        } else {
            ""
        },
        options.out.display()
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
