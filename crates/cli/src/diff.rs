//! `wirelab run --diff A,B`: every scenario on two stacks, each backend's own verdict and turmoil's, and the normalized comparison of the two runs, as text (printed, and `<out>/diff.txt`) and JSON (`<out>/diff.json`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rayon::prelude::*;
use serde::Serialize;
use wirelab::judge::diff::{compare, Comparison, Names, RunSide};
use wirelab::judge::reference::ReferenceVerdict;
use wirelab::scenario::golden::write_atomic;
use wirelab::scenario::runner::{self, RunSummary, Settings};
use wirelab::{Registry, Scenario};

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
    differing_facts: BTreeMap<String, usize>,
    /// Scenarios where each backend's applications disagree with turmoil's reference.
    reference_disagreements: [usize; 2],
}

/// The captures a run wrote, by segment, in file-name order.
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

/// Runs every scenario on both stacks and reports. Exit status 1 when a run failed its checks;
/// differences alone are findings, not failures.
pub fn run(
    pool: &rayon::ThreadPool,
    scenarios: Vec<(Scenario, PathBuf)>,
    (a, b): (String, String),
    seed: Option<u64>,
    settings: &Settings,
    stacks: &Registry,
) -> anyhow::Result<ExitCode> {
    let out = settings
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("target/wirelab"));
    let side_settings = |stack: &str| {
        let mut s = settings.clone();
        s.out = Some(out.join(stack));
        s.all_artifacts = true;
        s.reference = true;
        s
    };
    let settings_of = [side_settings(&a), side_settings(&b)];
    let jobs: Vec<(&Scenario, &Path, usize)> = scenarios
        .iter()
        .flat_map(|(s, root)| [(s, root.as_path(), 0), (s, root.as_path(), 1)])
        .collect();
    let names = [a.as_str(), b.as_str()];
    let results: Vec<RunSummary> = pool.install(|| {
        jobs.par_iter()
            .map(|(s, root, side)| {
                let seed = seed.unwrap_or(s.config.seed);
                runner::play_scenario(
                    s,
                    root,
                    Some(names[*side]),
                    seed,
                    stacks,
                    &settings_of[*side],
                )
                .summary
            })
            .collect()
    });
    let mut results = results.into_iter();
    let mut report = DiffReport {
        stacks: [a.clone(), b.clone()],
        scenarios: Vec::new(),
        passed: [0, 0],
        differing_facts: BTreeMap::new(),
        reference_disagreements: [0, 0],
    };
    let mut text = String::new();
    for (scenario, _) in &scenarios {
        let (Some(ra), Some(rb)) = (results.next(), results.next()) else {
            break;
        };
        let side = |stack: &str, r: &RunSummary| {
            let dir = out.join(stack).join(&scenario.name);
            let dir = if r.seed == scenario.config.seed {
                dir
            } else {
                dir.join(format!("seed-{}", r.seed))
            };
            RunSide {
                stack: stack.to_string(),
                passed: r.passed,
                outcome: r.outcome.clone(),
                end_time_us: r.end_time_us,
                apps: r.apps.clone(),
                captures: read_captures(&dir),
            }
        };
        let comparison = compare(
            &side(&a, &ra),
            &side(&b, &rb),
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
        let _ = write!(
            text,
            "== {} (seed {})\n{}",
            scenario.name,
            ra.seed,
            comparison.render()
        );
        for (index, r) in [&ra, &rb].into_iter().enumerate() {
            let stack = names[index];
            if let Some(reference) = &r.reference {
                let _ = writeln!(
                    text,
                    "  turmoil reference, {stack}: {}",
                    reference.to_string().replace('\n', "\n    ")
                );
                if matches!(reference, ReferenceVerdict::Disagree { .. }) {
                    report.reference_disagreements[index] += 1;
                }
            }
            for problem in &r.problems {
                let _ = writeln!(
                    text,
                    "  {stack} problem: {}",
                    problem.replace('\n', "\n    ")
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
    let _ = write!(
        text,
        "== summary: {} scenarios; {a} passed {}, {b} passed {}; disagreements with the turmoil reference: {a} {}, {b} {}\nfacts that differ, by the number of scenarios where they do:\n",
        report.scenarios.len(),
        report.passed[0],
        report.passed[1],
        report.reference_disagreements[0],
        report.reference_disagreements[1]
    );
    let mut by_count: Vec<(&String, &usize)> = report.differing_facts.iter().collect();
    by_count.sort_by(|x, y| y.1.cmp(x.1).then(x.0.cmp(y.0)));
    for (fact, count) in by_count {
        let _ = writeln!(text, "  {count:>3}  {fact}");
    }
    print!("{text}");
    write_atomic(&out.join("diff.txt"), text.as_bytes())?;
    write_atomic(&out.join("diff.json"), &serde_json::to_vec_pretty(&report)?)?;
    println!(
        "differential report in {} and {}",
        out.join("diff.txt").display(),
        out.join("diff.json").display()
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
