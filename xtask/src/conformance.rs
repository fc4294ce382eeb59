//! `cargo xtask conformance`: runs every scenario and every conformance script on each available backend, builds the RFC requirement matrix, prints it, writes scenarios/CONFORMANCE.md and <out>/conformance.json, and with --check compares the committed Markdown.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use harness::check::{check, ExpectationResult};
use harness::config::StackKind;
use harness::conformance::{Cell, Coverage, Matrix, Verdict};
use harness::golden::write_atomic;
use harness::requirements::Catalogue;
use harness::scenario::{describe, stack_name, Expectation, Scenario};
use harness::sim::RunOptions;
use rayon::prelude::*;

use crate::scenarios::{self, workspace_root};

pub struct Options {
    pub out: PathBuf,
    /// Compare the committed scenarios/CONFORMANCE.md with what would be written, and write
    /// nothing there.
    pub check: bool,
    pub jobs: Option<usize>,
}

/// Where the Markdown matrix is committed, relative to the workspace root.
const MARKDOWN: &str = "scenarios/CONFORMANCE.md";

pub fn run(options: Options) -> anyhow::Result<ExitCode> {
    let root = workspace_root();
    let catalogue = Catalogue::builtin().map_err(|e| anyhow::anyhow!("{e}"))?;
    let scenarios =
        scenarios::load_all(&root).map_err(|errors| anyhow::anyhow!("{}", errors.join("\n")))?;
    let mut backends = vec![StackKind::Smoltcp];
    match stack::lwip::available() {
        Ok(()) => backends.push(StackKind::Lwip),
        Err(missing) => eprintln!("lwip: not run ({missing}); the matrix has no lwip column"),
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(options.jobs.unwrap_or(0))
        .build()
        .context("starting worker threads")?;
    let out = if options.out.is_absolute() {
        options.out.clone()
    } else {
        root.join(&options.out)
    };
    let mut coverage = pool.install(|| scenario_coverage(&scenarios, &backends, &out))?;
    coverage.extend(script_coverage(&root, &backends, &out)?);
    let matrix = Matrix::build(catalogue, &coverage);

    print!("{}", render_text(&matrix));
    print!("{}", matrix.render_summary());

    let json_path = out.join("conformance.json");
    write_atomic(&json_path, matrix.render_json().as_bytes())
        .with_context(|| format!("writing {}", json_path.display()))?;
    println!("wrote {}", json_path.display());

    let markdown = matrix.render_markdown(catalogue);
    let markdown_path = root.join(MARKDOWN);
    if options.check {
        let committed = std::fs::read_to_string(&markdown_path).unwrap_or_default();
        if committed == markdown {
            println!("{MARKDOWN} is up to date");
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!(
            "{MARKDOWN} is stale: {}\n  regenerate it with: cargo xtask conformance{}",
            first_difference(&committed, &markdown),
            if backends.contains(&StackKind::Lwip) {
                ""
            } else {
                " (with lwIP installed: apt-get install liblwip-dev liblwip0, so that the lwip column is there)"
            }
        );
        return Ok(ExitCode::from(1));
    }
    write_atomic(&markdown_path, markdown.as_bytes())
        .with_context(|| format!("writing {}", markdown_path.display()))?;
    println!("wrote {MARKDOWN}");
    Ok(ExitCode::SUCCESS)
}

/// One line per requirement that something covers, then the findings.
fn render_text(matrix: &Matrix) -> String {
    let mut out = String::new();
    let width = matrix.rows.iter().map(|r| r.id.len()).max().unwrap_or(0);
    let mut not_covered = 0;
    for row in &matrix.rows {
        if row.results.values().all(|c| *c == Cell::NotCovered) {
            not_covered += 1;
            continue;
        }
        let cells: Vec<String> = row
            .results
            .iter()
            .map(|(backend, cell)| format!("{backend} {:<11}", cell.label()))
            .collect();
        out.push_str(&format!(
            "{:<width$}  {}\n",
            row.id,
            cells.join("  ").trim_end()
        ));
    }
    out.push_str(&format!(
        "({not_covered} catalogued requirements not covered by anything: see {MARKDOWN})\n"
    ));
    for row in &matrix.rows {
        for (backend, cell) in &row.results {
            if let Cell::Fail { failures, .. } = cell {
                for failure in failures {
                    let first = failure.finding.lines().next().unwrap_or_default();
                    out.push_str(&format!(
                        "FAIL {} on {backend}: {}: {first}\n",
                        row.id, failure.source
                    ));
                }
            }
        }
    }
    out
}

/// Where two texts first differ, as a line number and the two lines.
fn first_difference(committed: &str, fresh: &str) -> String {
    if committed.is_empty() {
        return "it is missing or empty".to_string();
    }
    let mut old = committed.lines();
    let mut new = fresh.lines();
    for line in 1.. {
        match (old.next(), new.next()) {
            (Some(a), Some(b)) if a == b => continue,
            (a, b) => {
                return format!(
                    "line {line} is\n    {}\n  and would be\n    {}",
                    a.unwrap_or("(end of file)"),
                    b.unwrap_or("(end of file)")
                )
            }
        }
    }
    String::new()
}

/// The scenario with every host on `stack`.
fn on_stack(scenario: &Scenario, stack: StackKind) -> Scenario {
    let mut scenario = scenario.clone();
    for host in &mut scenario.config.hosts {
        host.stack = stack;
    }
    scenario
}

/// What one scenario run on one backend says.
struct Ran {
    passed: bool,
    problems: Vec<String>,
    expectations: Vec<ExpectationResult>,
}

/// Runs one scenario at its own seed with every host on `stack`: smoltcp in this process, lwIP
/// in a child process (an lwIP assertion aborts its process).
fn run_scenario(scenario: &Scenario, stack: StackKind, out: &Path) -> anyhow::Result<Ran> {
    let seed = scenario.config.seed;
    match stack {
        StackKind::Smoltcp => {
            let ran = check(&on_stack(scenario, stack), seed, &RunOptions::default());
            Ok(match ran {
                Ok(checked) => Ran {
                    passed: checked.passed(),
                    problems: checked.problems.clone(),
                    expectations: checked.expectations.clone(),
                },
                Err(error) => Ran {
                    passed: false,
                    problems: vec![format!("the run could not start: {error}")],
                    expectations: Vec::new(),
                },
            })
        }
        StackKind::Lwip | StackKind::Linux => {
            let options = scenarios::Options {
                filter: None,
                seed: None,
                seeds: None,
                jobs: None,
                out: out.to_path_buf(),
                bless: false,
                stack: Some(stack),
                diff: None,
                test_lwip_assert: None,
            };
            let judged = scenarios::run_in_child(scenario, seed, stack, &options, false)?;
            Ok(Ran {
                passed: judged.summary.passed,
                problems: judged.summary.problems,
                expectations: judged.summary.expectations,
            })
        }
    }
}

/// Coverage rows of every scenario on every backend: one row with the scenario's declared
/// requirements and its verdict, plus a failing row for each known finding (a `finding`
/// check) that fired on that backend, against the requirement the finding names.
fn scenario_coverage(
    scenarios: &[Scenario],
    backends: &[StackKind],
    out: &Path,
) -> anyhow::Result<Vec<Coverage>> {
    let runs: Vec<(&Scenario, StackKind)> = scenarios
        .iter()
        .flat_map(|s| backends.iter().map(move |&b| (s, b)))
        .collect();
    let rows: Vec<anyhow::Result<Vec<Coverage>>> = runs
        .par_iter()
        .map(|&(scenario, stack)| {
            let ran = run_scenario(scenario, stack, out)
                .with_context(|| format!("scenario {} on {}", scenario.name, stack_name(stack)))?;
            Ok(coverage_of(scenario, stack_name(stack), &ran))
        })
        .collect();
    let mut coverage = Vec::new();
    for row in rows {
        coverage.extend(row?);
    }
    Ok(coverage)
}

fn coverage_of(scenario: &Scenario, backend: &str, ran: &Ran) -> Vec<Coverage> {
    let source = format!("scenario {}", scenario.name);
    let verdict = if ran.passed {
        Verdict::Pass
    } else {
        Verdict::Fail {
            finding: ran.problems.join("\n"),
        }
    };
    let mut rows = vec![Coverage {
        source: source.clone(),
        backend: backend.to_string(),
        requirements: scenario.requirements.clone(),
        verdict,
    }];
    for (expectation, result) in scenario.expectations.iter().zip(&ran.expectations) {
        let Expectation::Finding { requirement, .. } = expectation else {
            continue;
        };
        let described = describe(expectation);
        let fired = result.observed.parse::<u64>().is_ok_and(|n| n > 0);
        if result.expectation != described || !result.passed || !fired {
            // The finding did not show on this backend as recorded; if that fails the
            // scenario, its own row says so.
            continue;
        }
        rows.push(Coverage {
            source: source.clone(),
            backend: backend.to_string(),
            requirements: vec![requirement.clone()],
            verdict: Verdict::Fail {
                finding: format!(
                    "{described}; observed {} (the scenario passes on today's behaviour)",
                    result.observed
                ),
            },
        });
    }
    rows
}

/// Plays every conformance script on every backend (lwIP in child processes) and returns one
/// row per script and backend (`source` is `script <name>`). A passing script covers all the
/// requirements it declares; a script that fails where it records a known finding fails the
/// requirement that finding names, and covers nothing else on that backend (the lines after
/// the failure never ran); any other failure fails everything the script declares.
fn script_coverage(
    root: &Path,
    backends: &[StackKind],
    out: &Path,
) -> anyhow::Result<Vec<Coverage>> {
    let scripts = crate::scripts::load_all(&crate::scripts::scripts_root(root), None)
        .map_err(|errors| anyhow::anyhow!("{}", errors.join("\n")))?;
    let results = crate::scripts::run_all(&scripts, backends, out)?;
    let mut rows = Vec::with_capacity(results.len());
    for result in results {
        let Some(script) = scripts.iter().find(|s| s.name == result.name) else {
            continue;
        };
        let source = format!("script {}", script.name);
        let message = result.message.clone().unwrap_or_default();
        let (requirements, verdict) = match result.verdict.as_str() {
            // A script a backend cannot play covers nothing there.
            "not_run" => continue,
            "passed" => (script.requirements.clone(), Verdict::Pass),
            "known_failure" => {
                let requirement = result.requirement.clone().unwrap_or_default();
                (
                    vec![requirement.clone()],
                    Verdict::Fail {
                        finding: format!("{requirement}: {}", first_line(&message)),
                    },
                )
            }
            _ => (
                script.requirements.clone(),
                Verdict::Fail {
                    finding: format!("unexpected failure: {}", first_line(&message)),
                },
            ),
        };
        rows.push(Coverage {
            source,
            backend: result.backend.clone(),
            requirements,
            verdict,
        });
    }
    Ok(rows)
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario() -> Scenario {
        let root = workspace_root().join("scenarios");
        match harness::scenario::load(&root.join("tcp/connect_timeout_syn_backoff.toml"), &root) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    fn results(scenario: &Scenario, passed: bool, observed: &str) -> Vec<ExpectationResult> {
        scenario
            .expectations
            .iter()
            .map(|e| ExpectationResult {
                expectation: describe(e),
                passed,
                observed: observed.to_string(),
            })
            .collect()
    }

    #[test]
    fn a_fired_known_finding_fails_its_requirement_and_a_failed_run_carries_its_problems() {
        let scenario = scenario();
        let fired = Ran {
            passed: true,
            problems: Vec::new(),
            expectations: results(&scenario, true, "1"),
        };
        let rows = coverage_of(&scenario, "smoltcp", &fired);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].verdict, Verdict::Pass);
        assert_eq!(rows[0].requirements, scenario.requirements);
        assert_eq!(rows[1].requirements, ["rfc9293:3.10.8"]);
        assert!(
            matches!(&rows[1].verdict, Verdict::Fail { finding } if finding.contains("tcp-ack-beyond-sent") && finding.contains("observed 1")),
            "{:?}",
            rows[1].verdict
        );

        let failed = Ran {
            passed: false,
            problems: vec!["first".to_string(), "second".to_string()],
            expectations: results(&scenario, false, "0"),
        };
        let rows = coverage_of(&scenario, "lwip", &failed);
        assert_eq!(rows.len(), 1);
        assert_eq!(
            rows[0].verdict,
            Verdict::Fail {
                finding: "first\nsecond".to_string()
            }
        );
        assert_eq!(rows[0].source, "scenario tcp/connect_timeout_syn_backoff");
    }

    #[test]
    fn the_first_difference_names_the_line() {
        assert_eq!(
            first_difference("a\nb\nc\n", "a\nx\nc\n"),
            "line 2 is\n    b\n  and would be\n    x"
        );
        assert_eq!(first_difference("", "a"), "it is missing or empty");
        assert!(first_difference("a\n", "a\nb\n").contains("(end of file)"));
    }
}
