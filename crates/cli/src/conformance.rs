//! `wirelab conformance`: runs every scenario and conformance script on each available stack that runs in virtual time, builds the RFC requirement matrix, prints it, writes it as Markdown and JSON, and with `--check` compares the committed Markdown.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use rayon::prelude::*;
use wirelab::judge::expect::{describe, Expectation};
use wirelab::scenario::conformance::{Cell, Coverage, Matrix, Verdict};
use wirelab::scenario::golden::write_atomic;
use wirelab::scenario::requirements::Catalogue;
use wirelab::scenario::runner::{self, RunSummary, ScriptResult, Settings};
use wirelab::{Registry, Scenario};

use crate::run::{run_scripts, virtual_time_stacks};

/// What `wirelab conformance` takes.
#[derive(clap::Args, Clone, Debug)]
pub struct ConformanceArgs {
    /// Scenario files, scripts, or folders of them (wirelab's library: its scenarios/ folder).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Where conformance.json and the runs' artifacts go.
    #[arg(long, default_value = "target/wirelab")]
    pub out: PathBuf,
    /// The Markdown matrix (default: CONFORMANCE.md in the first path's folder).
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// Fail (exit 1) when the committed Markdown differs from what this run would write;
    /// write nothing there.
    #[arg(long)]
    pub check: bool,
    /// The stacks to run on, comma-separated (default: every available one that runs in
    /// virtual time).
    #[arg(long, value_delimiter = ',')]
    pub stacks: Vec<String>,
    /// Worker threads.
    #[arg(long)]
    pub jobs: Option<usize>,
    /// How the printed command that regenerates the Markdown begins.
    #[arg(long, hide = true, default_value = "wirelab conformance")]
    pub command: String,
}

pub fn run(args: ConformanceArgs, stacks: &Registry) -> anyhow::Result<ExitCode> {
    let catalogue = Catalogue::builtin().map_err(|e| anyhow::anyhow!("{e}"))?;
    let found = wirelab::scenario::folder::find(&args.paths, stacks);
    if !found.errors.is_empty() {
        anyhow::bail!("{}", found.errors.join("\n"));
    }
    let backends = if args.stacks.is_empty() {
        virtual_time_stacks(stacks)
    } else {
        args.stacks.clone()
    };
    for backend in &backends {
        if let Some(factory) = stacks.get(backend) {
            if let Err(missing) = factory.available() {
                anyhow::bail!("{backend}: {missing}");
            }
        } else {
            anyhow::bail!("{backend} is not a registered stack (`wirelab stacks` lists them)");
        }
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.jobs.unwrap_or(0))
        .build()
        .context("starting worker threads")?;
    let golden = found.first_root.as_deref().map_or_else(
        || PathBuf::from("golden"),
        wirelab::scenario::folder::golden_of,
    );
    let mut settings = Settings::new(golden);
    settings.goldens = false;
    let runs: Vec<(&Scenario, &str)> = found
        .scenarios
        .iter()
        .flat_map(|s| backends.iter().map(move |b| (s, b.as_str())))
        .collect();
    let mut coverage: Vec<Coverage> = pool.install(|| {
        runs.par_iter()
            .flat_map(|&(scenario, backend)| {
                let root = root_of(scenario);
                let mut settings = settings.clone();
                settings.out = Some(args.out.join(backend));
                let judged = runner::play_scenario(
                    scenario,
                    &root,
                    Some(backend),
                    scenario.config.seed,
                    stacks,
                    &settings,
                );
                coverage_of(&scenario.on_stack(Some(backend)), backend, &judged.summary)
            })
            .collect()
    });
    let results = pool.install(|| run_scripts(&found.scripts, &backends, stacks, &args.out));
    coverage.extend(script_coverage(&found.scripts, &results));
    let matrix = Matrix::build(catalogue, &coverage);

    print!("{}", render_text(&matrix, &args));
    print!("{}", matrix.render_summary());

    let json_path = args.out.join("conformance.json");
    write_atomic(&json_path, matrix.render_json().as_bytes())
        .with_context(|| format!("writing {}", json_path.display()))?;
    println!("wrote {}", json_path.display());

    let markdown = matrix.render_markdown(catalogue);
    let markdown_path = markdown_path(&args);
    if args.check {
        let committed = std::fs::read_to_string(&markdown_path).unwrap_or_default();
        if committed == markdown {
            println!("{} is up to date", markdown_path.display());
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!(
            "{} is stale: {}\n  regenerate it with: {}",
            markdown_path.display(),
            first_difference(&committed, &markdown),
            args.command
        );
        return Ok(ExitCode::from(1));
    }
    write_atomic(&markdown_path, markdown.as_bytes())
        .with_context(|| format!("writing {}", markdown_path.display()))?;
    println!("wrote {}", markdown_path.display());
    Ok(ExitCode::SUCCESS)
}

/// The folder a scenario was found in: its file's path with the name's folders taken off.
fn root_of(scenario: &Scenario) -> PathBuf {
    let mut root = scenario.path.clone();
    for _ in scenario.name.split('/') {
        root.pop();
    }
    root
}

fn markdown_path(args: &ConformanceArgs) -> PathBuf {
    args.markdown.clone().unwrap_or_else(|| {
        let first = args.paths.first().map_or(Path::new("."), PathBuf::as_path);
        let folder = if first.is_dir() {
            first.to_path_buf()
        } else {
            first
                .parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
        };
        folder.join("CONFORMANCE.md")
    })
}

/// One line per requirement that something covers, then the findings.
fn render_text(matrix: &Matrix, args: &ConformanceArgs) -> String {
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
        "({not_covered} catalogued requirements not covered by anything: see {})\n",
        markdown_path(args).display()
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

/// Coverage rows of one scenario's run on one backend (`scenario` as the run judged it, with
/// every host on that backend): one row with the scenario's declared requirements and its
/// verdict, plus a failing row for each known failure that failed as recorded and each known
/// finding (a `finding` check) that fired, against the requirement each names.
fn coverage_of(scenario: &Scenario, backend: &str, run: &RunSummary) -> Vec<Coverage> {
    let source = format!("scenario {}", scenario.name);
    let verdict = if run.passed {
        Verdict::Pass
    } else {
        Verdict::Fail {
            finding: run.problems.join("\n"),
        }
    };
    let mut rows = vec![Coverage {
        source: source.clone(),
        backend: backend.to_string(),
        requirements: scenario.requirements.clone(),
        verdict,
    }];
    let fail = |requirement: &str, finding: String| Coverage {
        source: source.clone(),
        backend: backend.to_string(),
        requirements: vec![requirement.to_string()],
        verdict: Verdict::Fail { finding },
    };
    for known in &scenario.known_failures {
        let Some(result) = scenario
            .expectation_numbers
            .iter()
            .position(|n| *n == known.expect)
            .and_then(|index| run.expectations.get(index))
        else {
            continue;
        };
        if !result.passed {
            rows.push(fail(
                &known.requirement,
                format!("{}; observed {}", result.expectation, result.observed),
            ));
        }
    }
    for (expectation, result) in scenario.expectations.iter().zip(&run.expectations) {
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
        rows.push(fail(
            requirement,
            format!(
                "{described}; observed {} (the scenario passes on today's behaviour)",
                result.observed
            ),
        ));
    }
    rows
}

/// One row per script and backend (`source` is `script <name>`). A passing script covers all
/// the requirements it declares; a script that fails where it records a known finding fails
/// the requirement that finding names, and covers nothing else on that backend (the lines
/// after the failure never ran); any other failure fails everything the script declares.
fn script_coverage(
    scripts: &[wirelab::scenario::script::Script],
    results: &[ScriptResult],
) -> Vec<Coverage> {
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
    rows
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use wirelab::judge::expect::ExpectationResult;

    fn scenario() -> Scenario {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
        let stacks = wirelab::builtin_stacks();
        match wirelab::scenario::load(
            &root.join("tcp/connect_timeout_syn_backoff.toml"),
            &root,
            &stacks,
        ) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    fn summary(scenario: &Scenario, passed: bool, observed: &str) -> RunSummary {
        RunSummary {
            name: scenario.name.clone(),
            seed: 1,
            stack: None,
            passed,
            outcome: "completed".into(),
            problems: if passed {
                Vec::new()
            } else {
                vec!["first".to_string(), "second".to_string()]
            },
            end_time_us: 0,
            frames_emitted: 0,
            frames_delivered: 0,
            trace_hash: String::new(),
            expectations: scenario
                .expectations
                .iter()
                .map(|e| ExpectationResult {
                    expectation: describe(e),
                    passed,
                    observed: observed.to_string(),
                })
                .collect(),
            apps: Vec::new(),
            reference: None,
        }
    }

    #[test]
    fn a_fired_known_finding_fails_its_requirement_and_a_failed_run_carries_its_problems() {
        let on_smoltcp = scenario().on_stack(Some("smoltcp"));
        let rows = coverage_of(&on_smoltcp, "smoltcp", &summary(&on_smoltcp, true, "1"));
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].verdict, Verdict::Pass);
        assert_eq!(rows[0].requirements, on_smoltcp.requirements);
        assert_eq!(rows[1].requirements, ["rfc9293:3.10.8"]);
        assert!(
            matches!(&rows[1].verdict, Verdict::Fail { finding } if finding.contains("tcp-ack-beyond-sent") && finding.contains("observed 1")),
            "{:?}",
            rows[1].verdict
        );

        // On lwIP the scenario records a known failure (rfc6298:5.5): when it fails as
        // recorded, the requirement fails there too.
        let on_lwip = scenario().on_stack(Some("lwip"));
        let rows = coverage_of(&on_lwip, "lwip", &summary(&on_lwip, false, "0"));
        assert_eq!(rows[0].source, "scenario tcp/connect_timeout_syn_backoff");
        assert_eq!(
            rows[0].verdict,
            Verdict::Fail {
                finding: "first\nsecond".to_string()
            }
        );
        assert!(
            rows.iter().any(|r| r.requirements == ["rfc6298:5.5"]),
            "{rows:?}"
        );
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
