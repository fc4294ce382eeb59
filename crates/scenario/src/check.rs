//! The one entry point that runs a scenario and judges it: the run, its expectations, the trace oracles, and the decoded snapshot people review.
//!
//! The command line, `cargo test` and users' suites all call [`check_on`], so a scenario
//! passes or fails the same way everywhere.

use std::fmt::Write as _;

use judge::expect::{Evidence, Expectation, ExpectationResult};
use judge::oracle::{self, Violation};
use sim::apps::AppReport;
use sim::trace::TraceFrame;
use sim::world::{run, RunError, RunOptions, RunReport};
use stack::{MacAddr, Registry};
use wire::capture::read_capture;
use wire::format_time;
use wire::Decoded;

use crate::format::Scenario;

/// A scenario's run and everything judged about it.
pub struct Checked {
    pub name: String,
    pub seed: u64,
    pub report: RunReport,
    /// Every frame of the report's trace, decoded once: what the oracles and expectations
    /// judged and what the snapshot shows.
    pub frames: Vec<TraceFrame>,
    pub expectations: Vec<ExpectationResult>,
    pub violations: Vec<Violation>,
    /// Everything that fails the run, one sentence each; empty when it passed.
    pub problems: Vec<String>,
}

impl Checked {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }

    /// The reviewed text: what the run showed (outcome, expectations, oracles, applications)
    /// followed by the decoded trace of every frame and every impairment decision.
    pub fn snapshot(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "scenario: {}", self.name);
        let _ = writeln!(out, "seed: {}", self.seed);
        let _ = writeln!(out, "outcome: {}", self.report.outcome);
        if self.report.real_time {
            let _ = writeln!(
                out,
                "real time: a linux host was attached, so virtual time followed the wall clock and the run cannot be reproduced"
            );
        }
        let _ = writeln!(
            out,
            "end: {} s, {} frames emitted, {} delivered, {} dropped",
            format_time(self.report.stats.end_time_us),
            self.report.stats.frames_emitted,
            self.report.stats.frames_delivered,
            self.report.stats.frames_dropped
        );
        let _ = writeln!(out, "expectations:");
        for result in &self.expectations {
            let _ = writeln!(
                out,
                "  {} {} (observed: {})",
                if result.passed { "ok  " } else { "FAIL" },
                result.expectation,
                result.observed
            );
        }
        if self.violations.is_empty() {
            let _ = writeln!(out, "oracles: no violation");
        } else {
            let _ = writeln!(out, "oracles:");
            for violation in &self.violations {
                let _ = writeln!(out, "  {violation}");
            }
        }
        let _ = writeln!(out, "apps:");
        for app in &self.report.apps {
            let _ = writeln!(out, "  {}", describe_app(app));
        }
        let _ = writeln!(out, "trace:");
        out.push_str(&self.trace_text());
        out
    }

    /// The decoded trace, one line per event, from the frames decoded for judging.
    pub fn trace_text(&self) -> String {
        self.report
            .trace
            .render_decoded(&self.report.names, &self.frames)
    }
}

fn describe_app(app: &AppReport) -> String {
    let mut out = format!("{} {}:", app.host, app.kind);
    for (name, value) in &app.counters {
        let _ = write!(out, " {name}={value}");
    }
    if !app.states.is_empty() {
        let states: Vec<String> = app
            .states
            .iter()
            .map(|(t, s)| format!("{s}@{}", format_time(*t)))
            .collect();
        let _ = write!(out, "; states {}", states.join(" "));
    }
    for (t, e) in &app.errors {
        let _ = write!(out, "; error at {}: {e}", format_time(*t));
    }
    match app.done_at_us {
        Some(t) => {
            let _ = write!(out, "; done at {}", format_time(t));
        }
        None if app.kind.ends_with("server") => {}
        None => out.push_str("; not done"),
    }
    out
}

/// Runs `scenario` with `seed`, its hosts' stacks built from `stacks`, and judges it. An
/// error means the world could not be built (a stack that is not registered or cannot start
/// here); a stack that panics is a failed run instead.
pub fn check(
    scenario: &Scenario,
    seed: u64,
    stacks: &Registry,
    options: &RunOptions,
) -> Result<Checked, RunError> {
    let mut config = scenario.config.clone();
    config.seed = seed;
    let macs: Vec<MacAddr> = (0..config.hosts.len())
        .map(|i| config.host_mac(i))
        .collect();
    let report = run(config.clone(), &scenario.apps, stacks, options)?;
    // The one parse of the run's frames: the oracles, the expectations and the snapshot all
    // read these records.
    let frames = report.trace.decode_frames();
    let violations = oracle::check_frames(&report.trace, &frames, &report.names, &macs);
    let evidence = Evidence::new(&config, &report, &frames, &violations);
    let expectations: Vec<ExpectationResult> = scenario
        .expectations
        .iter()
        .zip(&scenario.expectation_apps)
        .map(|(expectation, app)| evidence.judge(expectation, *app))
        .collect();
    drop(evidence);

    let mut problems = Vec::new();
    let outcome_checked = scenario
        .expectations
        .iter()
        .any(|e| matches!(e, Expectation::Outcome { .. }));
    if !outcome_checked && !report.outcome.is_success() {
        problems.push(format!("the run {}", report.outcome));
    }
    for result in expectations.iter().filter(|r| !r.passed) {
        problems.push(format!(
            "expected {}, observed {}",
            result.expectation, result.observed
        ));
    }
    for violation in &violations {
        let known = scenario
            .expectations
            .iter()
            .any(|e| matches!(e, Expectation::Finding { rule, .. } if rule == violation.rule));
        if !known {
            problems.push(format!("oracle: {violation}"));
        }
    }
    // An application error is a failure unless an `error` check expects it.
    for (index, app) in report.apps.iter().enumerate() {
        for (time, error) in &app.errors {
            let expected = scenario
                .expectations
                .iter()
                .zip(&scenario.expectation_apps)
                .any(|(e, a)| {
                    *a == Some(index)
                        && matches!(e, Expectation::Error { error: text, .. } if error.contains(text.as_str()))
                });
            if !expected {
                problems.push(format!(
                    "{} on {} reported an error no check expects, at {}: {error}",
                    app.kind,
                    app.host,
                    format_time(*time)
                ));
            }
        }
    }
    Ok(Checked {
        name: scenario.name.clone(),
        seed,
        report,
        frames,
        expectations,
        violations,
        problems,
    })
}

impl Scenario {
    /// The scenario as a run judges it: with every host on `stack` (as written for `None`),
    /// keeping only the `finding` checks and known failures that apply to the stack the
    /// hosts then run.
    pub fn on_stack(&self, stack: Option<&str>) -> Scenario {
        let mut scenario = self.clone();
        if let Some(stack) = stack {
            for host in &mut scenario.config.hosts {
                host.stack = stack.to_string();
            }
        }
        let run_stack = scenario.run_stack().map(str::to_string);
        let applies = |e: &Expectation| match e {
            Expectation::Finding {
                stack: Some(only), ..
            } => run_stack.as_ref() == Some(only),
            _ => true,
        };
        let kept: Vec<bool> = scenario.expectations.iter().map(applies).collect();
        let mut keep = kept.iter();
        scenario
            .expectations
            .retain(|_| keep.next().copied().unwrap_or(true));
        let mut keep = kept.iter();
        scenario
            .expectation_apps
            .retain(|_| keep.next().copied().unwrap_or(true));
        let mut keep = kept.iter();
        scenario
            .expectation_numbers
            .retain(|_| keep.next().copied().unwrap_or(true));
        scenario
            .known_failures
            .retain(|k| run_stack.as_ref() == Some(&k.stack));
        scenario
    }

    /// Judges the known failures of this (already [`on_stack`](Self::on_stack)) scenario in a
    /// run: each expectation named must have failed as recorded; its failure then leaves the
    /// problems, and its line in the report says it is known. Otherwise the run fails saying
    /// what changed.
    pub fn settle_known_failures(&self, checked: &mut Checked) {
        for known in &self.known_failures {
            let stack = &known.stack;
            let Some(index) = self
                .expectation_numbers
                .iter()
                .position(|n| *n == known.expect)
            else {
                checked.problems.push(format!(
                    "the known failure of {stack} ({}) names [[expect]] number {}, which this run does not judge",
                    known.requirement, known.expect
                ));
                continue;
            };
            let Some(result) = checked.expectations.get_mut(index) else {
                continue;
            };
            if result.passed {
                checked.problems.push(format!(
                    "known failure of {stack} ({}) no longer fails: {} (observed {}); remove it from known_failures, and re-bless",
                    known.requirement, result.expectation, result.observed
                ));
                continue;
            }
            if let Some(recorded) = &known.observed {
                if *recorded != result.observed {
                    checked.problems.push(format!(
                        "known failure of {stack} ({}) fails differently: {} observed {}, the known failure records {recorded}",
                        known.requirement, result.expectation, result.observed
                    ));
                    continue;
                }
            }
            // The line `check` wrote for this failure, which is now accounted for.
            let line = format!(
                "expected {}, observed {}",
                result.expectation, result.observed
            );
            if let Some(at) = checked.problems.iter().position(|p| *p == line) {
                checked.problems.remove(at);
            }
            result.expectation = format!(
                "{} [known failure of {stack}: {}]",
                result.expectation, known.requirement
            );
        }
    }
}

/// Runs `scenario` with every host on `stack` (as written for `None`) at `seed`, and judges
/// it with the checks and known failures that apply to that stack: what the command
/// line, `cargo test`, users' suites and differential runs all call.
pub fn check_on(
    scenario: &Scenario,
    stack: Option<&str>,
    seed: u64,
    stacks: &Registry,
    options: &RunOptions,
) -> Result<Checked, RunError> {
    let scenario = scenario.on_stack(stack);
    let mut checked = check(&scenario, seed, stacks, options)?;
    scenario.settle_known_failures(&mut checked);
    Ok(checked)
}

/// Checks that a snapshot's frame lines are exactly the frames of a segment's capture:
/// the reviewed text and the byte-exact golden must tell the same story.
pub fn snapshot_agrees_with_capture(
    snapshot: &str,
    segment: &str,
    capture: &[u8],
) -> Result<(), String> {
    let frames = read_capture(capture).map_err(|e| format!("the capture cannot be read: {e}"))?;
    let mut from_capture = Vec::new();
    for frame in &frames {
        if frame
            .comment
            .as_deref()
            .is_some_and(|c| c.contains("never on the segment"))
        {
            continue;
        }
        let line = Decoded::parse(&frame.data).line();
        let truncated = frame.data.len() < frame.original_len as usize;
        from_capture.push((format!("{} {line}", format_time(frame.time_us)), truncated));
    }
    let marker = format!(" {segment} #");
    let trace = snapshot
        .split_once("\ntrace:\n")
        .map(|(_, t)| t)
        .ok_or("the snapshot has no trace section")?;
    let from_snapshot: Vec<String> = trace
        .lines()
        .filter_map(|line| {
            let (time, rest) = line.split_once(&marker)?;
            // `<time> <segment> #<id> from <host>: <decoded>`
            let (_, decoded) = rest.split_once(": ")?;
            Some(format!("{time} {decoded}"))
        })
        .collect();
    if from_capture.len() != from_snapshot.len() {
        return Err(format!(
            "the snapshot lists {} frames on `{segment}`, the capture holds {}",
            from_snapshot.len(),
            from_capture.len()
        ));
    }
    for (i, (a, (b, truncated))) in from_snapshot.iter().zip(&from_capture).enumerate() {
        // A frame cut by the snap length decodes as far as its bytes go, then says it is
        // cut short; the snapshot, decoded from the whole frame, must begin the same way.
        let agrees = a == b
            || *truncated && {
                let cut = b.find(" [malformed").map_or(b.as_str(), |at| &b[..at]);
                a.starts_with(cut)
            };
        if !agrees {
            return Err(format!(
                "frame {} differs:\n  snapshot: {a}\n  capture:  {b}",
                i + 1
            ));
        }
    }
    Ok(())
}
