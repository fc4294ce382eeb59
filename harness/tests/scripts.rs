//! Every conformance script under `scenarios/scripts/` on every backend: one test each, judged against the findings the script records.

use std::path::{Path, PathBuf};

use libtest_mimic::{Failed, Trial};
use wirelab::scenario::folder;
use wirelab::scenario::script::{self, Script, Verdict};
use wirelab::Suite;

fn scripts_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/scripts")
}

fn main() {
    Suite::folder(scripts_root())
        .plugins(scripts_root().join("../../wirelab-plugins.toml"))
        .without_scenarios()
        .on("smoltcp")
        .on("lwip")
        .on("smoltcp@0.12")
        .on("linux")
        .trial(Trial::test("tidy::at_least_40_scripts", || {
            let count = scripts()?.len();
            if count < 40 {
                return Err(format!(
                    "{count} scripts under scenarios/scripts; the library keeps at least 40"
                )
                .into());
            }
            Ok(())
        }))
        .trial(Trial::test(
            "tidy::script_requirements_are_catalogued",
            script_requirements_are_catalogued,
        ))
        .trial(Trial::test(
            "engine::a_wrong_field_is_shown_side_by_side",
            a_wrong_field_is_shown_side_by_side,
        ))
        .trial(Trial::test(
            "engine::early_missing_and_unexpected_packets_fail",
            early_missing_and_unexpected_packets_fail,
        ))
        .trial(Trial::test(
            "engine::a_wrong_call_result_fails",
            a_wrong_call_result_fails,
        ))
        .trial(Trial::test(
            "engine::known_failures_are_judged_exactly",
            known_failures_are_judged_exactly,
        ))
        .run()
}

/// Every script of the library, read.
fn scripts() -> Result<Vec<Script>, Failed> {
    let found = folder::find(&[scripts_root()], &wirelab::builtin_stacks());
    if !found.errors.is_empty() {
        return Err(found.errors.join("\n").into());
    }
    Ok(found.scripts)
}

/// Every script declares requirement ids, and each is in the catalogue, like scenarios.
fn script_requirements_are_catalogued() -> Result<(), Failed> {
    let catalogue =
        wirelab::scenario::requirements::Catalogue::builtin().map_err(|e| e.to_string())?;
    let mut problems = Vec::new();
    for script in scripts()? {
        if script.requirements.is_empty() {
            problems.push(format!("{}: no `// requirements:` line", script.name));
        }
        for id in script
            .requirements
            .iter()
            .chain(script.known_failures.iter().map(|f| &f.requirement))
        {
            if let Some(problem) = catalogue.unknown(id) {
                problems.push(format!("{}: {problem}", script.name));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n").into())
    }
}

fn play(text: &str) -> script::ScriptRun {
    let parsed = script::parse(text, Path::new("inline.pkt"), "inline");
    match parsed {
        Ok(s) => script::run(&s, "smoltcp", &wirelab::builtin_stacks(), 1),
        Err(e) => panic!("the inline script does not parse: {e}"),
    }
}

const ACTIVE_OPEN: &str = "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0 fcntl(3, F_SETFL, O_RDWR|O_NONBLOCK) = 0
+0 connect(3, ..., ...) = -1 EINPROGRESS
";

fn a_wrong_field_is_shown_side_by_side() -> Result<(), Failed> {
    let run = play(&format!("{ACTIVE_OPEN}+0 > S 0:0(0) win 1234 <...>\n"));
    let failure = run.failure.ok_or("a wrong window passed")?;
    if failure.line != 4
        || !failure.message.contains("win 65535 (expected 1234)")
        || !failure
            .message
            .contains("expected: 0.000000 S 0:0(0) win 1234 <...>")
        || !failure
            .message
            .contains("actual:   0.000000 S 0:0(0) win 65535")
    {
        return Err(format!(
            "unclear failure at line {}: {}",
            failure.line, failure.message
        )
        .into());
    }
    Ok(())
}

fn early_missing_and_unexpected_packets_fail() -> Result<(), Failed> {
    // The SYN goes out at 0, not at 0.1.
    let early = play(&format!("{ACTIVE_OPEN}+0.1 > S 0:0(0) <...>\n"));
    // Nothing answers a SYN-ACK that acknowledges the wrong number... but nothing is sent
    // before the SYN retransmission either: a FIN expected at 0.5 never comes.
    let missing = play(&format!(
        "{ACTIVE_OPEN}+0 > S 0:0(0) <...>\n+0.5 > F. 1:1(0) ack 1\n"
    ));
    // The SYN is sent while the script expects an injected packet at 0.2 first.
    let unexpected = play(&format!("{ACTIVE_OPEN}+0.2 < . 1:1(0) ack 1 win 100\n"));
    let checks = [
        (&early, 4, "packet early"),
        (&missing, 5, "expected packet not sent"),
        (&unexpected, 4, "unexpected packet at 0.000000"),
    ];
    for (run, line, words) in checks {
        match &run.failure {
            Some(f) if f.line == line && f.message.contains(words) => {}
            other => return Err(format!("expected `{words}` at line {line}, got {other:?}").into()),
        }
    }
    Ok(())
}

fn a_wrong_call_result_fails() -> Result<(), Failed> {
    let run = play("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 close(7) = 0\n");
    match run.failure {
        Some(f) if f.line == 2 && f.message.contains("returned -1 EBADF, expected 0") => Ok(()),
        other => {
            Err(format!("closing an unknown descriptor did not fail as EBADF: {other:?}").into())
        }
    }
}

fn known_failures_are_judged_exactly() -> Result<(), Failed> {
    let text = |line: usize| {
        format!("// requirements: rfc9293:3.5\n// known-failure smoltcp line {line}: rfc9293:3.5 the window differs\n{ACTIVE_OPEN}+0 > S 0:0(0) win 1234 <...>\n")
    };
    let judge = |text: String| {
        let s =
            script::parse(&text, Path::new("inline.pkt"), "inline").map_err(|e| e.to_string())?;
        let run = script::run(&s, "smoltcp", &wirelab::builtin_stacks(), 1);
        Ok::<_, String>(script::judge(&s, &run))
    };
    if !matches!(judge(text(6))?, Verdict::KnownFailure(_)) {
        return Err("the failure at the declared line was not recognised as the known one".into());
    }
    if !matches!(judge(text(5))?, Verdict::Unexpected(_)) {
        return Err("a failure at another line than the declared one passed".into());
    }
    let fixed = format!("// requirements: rfc9293:3.5\n// known-failure smoltcp line 6: rfc9293:3.5 gone\n{ACTIVE_OPEN}+0 > S 0:0(0) <...>\n");
    if !matches!(judge(fixed)?, Verdict::Unexpected(_)) {
        return Err("a known failure that no longer happens passed silently".into());
    }
    Ok(())
}
