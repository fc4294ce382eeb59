//! Every conformance script under `scenarios/scripts/` on every backend: one test each, judged against the findings the script records.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use harness::config::StackKind;
use harness::script::{self, Verdict};
use libtest_mimic::{Arguments, Failed, Trial};

fn scripts_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/scripts")
}

/// Set in a child process of this binary: `<backend>:<script>` to play and judge there.
const CHILD_ENV: &str = "WIRELAB_SCRIPT_CHILD";

fn main() -> ExitCode {
    if let Ok(what) = std::env::var(CHILD_ENV) {
        child_main(&what);
    }
    let mut args = Arguments::from_args();
    // Linux runs sleep through their scripts in real time: more threads than cores keep the
    // whole set to about a minute.
    if args.test_threads.is_none() {
        args.test_threads = Some(8);
    }
    let root = scripts_root();
    let mut trials = Vec::new();
    let paths = script::discover(&root).unwrap_or_default();
    for path in paths {
        let name = path
            .strip_prefix(&root)
            .unwrap_or(&path)
            .with_extension("")
            .to_string_lossy()
            .into_owned();
        for (backend, kind) in [
            ("smoltcp", StackKind::Smoltcp),
            ("lwip", StackKind::Lwip),
            ("linux", StackKind::Linux),
        ] {
            let path = path.clone();
            let root = root.clone();
            trials.push(Trial::test(format!("{name}@{backend}"), move || {
                run_one(&path, &root, kind)
            }));
        }
    }
    trials.push(Trial::test("tidy::at_least_40_scripts", || {
        let count = script::discover(&scripts_root())
            .map_err(|e| Failed::from(e.to_string()))?
            .len();
        if count < 40 {
            return Err(format!(
                "{count} scripts under scenarios/scripts; the library keeps at least 40"
            )
            .into());
        }
        Ok(())
    }));
    trials.push(Trial::test(
        "tidy::script_requirements_are_catalogued",
        script_requirements_are_catalogued,
    ));
    trials.push(Trial::test(
        "engine::a_wrong_field_is_shown_side_by_side",
        a_wrong_field_is_shown_side_by_side,
    ));
    trials.push(Trial::test(
        "engine::early_missing_and_unexpected_packets_fail",
        early_missing_and_unexpected_packets_fail,
    ));
    trials.push(Trial::test(
        "engine::a_wrong_call_result_fails",
        a_wrong_call_result_fails,
    ));
    trials.push(Trial::test(
        "engine::known_failures_are_judged_exactly",
        known_failures_are_judged_exactly,
    ));
    libtest_mimic::run(&args, trials).exit_code()
}

/// Every script declares requirement ids, and each is in the catalogue, like scenarios.
fn script_requirements_are_catalogued() -> Result<(), Failed> {
    let catalogue = harness::requirements::Catalogue::builtin().map_err(|e| e.to_string())?;
    let root = scripts_root();
    let mut problems = Vec::new();
    for path in script::discover(&root).map_err(|e| e.to_string())? {
        let script = script::load(&path, &root).map_err(|e| e.to_string())?;
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
        Ok(s) => script::run(&s, StackKind::Smoltcp, 1),
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
        let run = script::run(&s, StackKind::Smoltcp, 1);
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

fn run_one(path: &Path, root: &Path, kind: StackKind) -> Result<(), Failed> {
    if kind == StackKind::Lwip {
        if let Err(missing) = stack::lwip::available() {
            harness::skip_test(&missing.to_string());
            return Ok(());
        }
        // An lwIP assertion aborts the process: each lwIP run gets a process of its own, so
        // that an abort fails this test alone.
        return run_in_child(path, root, "lwip");
    }
    if kind == StackKind::Linux {
        if let Err(missing) = harness::linux_host::available() {
            harness::skip_test(&missing);
            return Ok(());
        }
        return judge_linux(path, root);
    }
    judge_here(path, root, kind)
}

/// A linux run is real time: played once (the kernel's timing is its own), in packetdrill's
/// tolerance, and judged like the others.
fn judge_linux(path: &Path, root: &Path) -> Result<(), Failed> {
    let script = script::load(path, root).map_err(|e| Failed::from(e.to_string()))?;
    let run = script::run(&script, StackKind::Linux, 1);
    match script::judge(&script, &run) {
        Verdict::Passed | Verdict::KnownFailure(_) => Ok(()),
        Verdict::NotRun(reason) => {
            println!("not run on linux: {reason}");
            Ok(())
        }
        Verdict::Unexpected(message) => {
            Err(format!("{message}\n--- trace ---\n{}", run.trace).into())
        }
    }
}

fn run_in_child(path: &Path, root: &Path, backend: &str) -> Result<(), Failed> {
    let name = path
        .strip_prefix(root)
        .unwrap_or(path)
        .with_extension("")
        .to_string_lossy()
        .into_owned();
    let output = harness::child::rerun_self(CHILD_ENV, &format!("{backend}:{name}"))?;
    if output.status.success() {
        return Ok(());
    }
    let how = match std::os::unix::process::ExitStatusExt::signal(&output.status) {
        Some(_) => format!(
            "the {backend} run {}; its last words:\n",
            harness::child::how_it_ended(output.status)
        ),
        None => String::new(),
    };
    Err(format!("{how}{}", harness::child::last_words(&output, 60)).into())
}

/// The child side of [`run_in_child`].
fn child_main(what: &str) -> ! {
    let result = (|| -> Result<(), String> {
        let (backend, name) = what
            .split_once(':')
            .ok_or_else(|| format!("{CHILD_ENV}={what}: expected <backend>:<script>"))?;
        let kind = harness::scenario::parse_stack(backend)?;
        let root = scripts_root();
        judge_here(&root.join(format!("{name}.pkt")), &root, kind).map_err(|f| {
            f.message()
                .map_or_else(|| "failed".to_string(), str::to_string)
        })
    })();
    harness::child::exit_with(result)
}

/// Plays a script twice here, checks that both runs are identical, and judges it.
fn judge_here(path: &Path, root: &Path, kind: StackKind) -> Result<(), Failed> {
    let script = script::load(path, root).map_err(|e| Failed::from(e.to_string()))?;
    let run = script::run(&script, kind, 1);
    let again = script::run(&script, kind, 1);
    if run.capture != again.capture || run.trace != again.trace {
        return Err("two runs of the same script and seed differ".into());
    }
    match script::judge(&script, &run) {
        Verdict::Passed | Verdict::KnownFailure(_) => Ok(()),
        Verdict::NotRun(reason) => Err(format!(
            "only real-time backends may decline a script, but {kind:?} did: {reason}"
        )
        .into()),
        Verdict::Unexpected(message) => {
            Err(format!("{message}\n--- trace ---\n{}", run.trace).into())
        }
    }
}
