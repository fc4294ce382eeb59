//! Replays the fuzz seed corpora and every minimized crash under `fuzz/regressions/` through the matching `wirelab::fuzz` function.
//!
//! A file `fuzz/regressions/<target>/<name>` must run through `wirelab::fuzz::<target>`
//! without a panic, unless a file `<name>.expect` sits next to it: then the run must panic,
//! with a message containing the `.expect` file's first line. That records a finding in the
//! stack under test as it behaves today (see `fuzz/FINDINGS.md`); when the stack is fixed the
//! test fails, and the `.expect` file goes.

use std::path::{Path, PathBuf};

use wirelab::fuzz::{run_target, TARGETS};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files of `dir`, sorted, leaving out `.expect` files and dot files.
fn inputs(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with(prefix) && !name.starts_with('.') && !name.ends_with(".expect")
        })
        .collect();
    files.sort();
    files
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".to_string()
    }
}

/// Runs `path` through `target`; returns a description of what went wrong, if anything.
fn replay(target: &str, path: &Path) -> Option<String> {
    let data = std::fs::read(path).expect("reading a fuzz input");
    let expect_path = PathBuf::from(format!("{}.expect", path.display()));
    let expected = std::fs::read_to_string(&expect_path)
        .ok()
        .map(|text| text.lines().next().unwrap_or("").trim().to_string());
    let result = std::panic::catch_unwind(|| run_target(target, &data));
    match (result, expected) {
        (Ok(true), None) => None,
        (Ok(false), _) => Some(format!("{}: no fuzz target `{target}`", path.display())),
        (Ok(true), Some(message)) => Some(format!(
            "{}: expected a panic containing `{message}` (see {}), but the run passed: \
             if the stack was fixed, delete the .expect file and update fuzz/FINDINGS.md",
            path.display(),
            expect_path.display()
        )),
        (Err(payload), None) => Some(format!(
            "{}: panicked: {}",
            path.display(),
            panic_message(payload.as_ref())
        )),
        (Err(payload), Some(message)) => {
            let got = panic_message(payload.as_ref());
            (!got.contains(&message)).then(|| {
                format!(
                    "{}: panicked with `{got}`, expected a message containing `{message}`",
                    path.display()
                )
            })
        }
    }
}

fn replay_all(dir_name: &str, prefix: &str) -> usize {
    let mut failures = Vec::new();
    let mut count = 0;
    for target in TARGETS {
        for path in inputs(&fuzz_dir().join(dir_name).join(target), prefix) {
            count += 1;
            failures.extend(replay(target, &path));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {count} inputs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    count
}

#[test]
fn every_minimized_crash_replays_as_recorded() {
    replay_all("regressions", "");
}

#[test]
fn the_seed_corpora_pass_every_target() {
    let count = replay_all("corpus", "seed-");
    assert!(
        count > 0,
        "no seed corpus under fuzz/corpus/<target>/seed-*"
    );
}

#[test]
fn regression_directories_are_named_after_targets() {
    let Ok(entries) = std::fs::read_dir(fuzz_dir().join("regressions")) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().to_string();
        assert!(
            !entry.path().is_dir() || TARGETS.contains(&name.as_str()),
            "fuzz/regressions/{name} is not a fuzz target; the targets are {TARGETS:?}"
        );
    }
}

/// The known findings the `simulation` target lets pass are still there: each input named
/// here makes the oracles report its rule, and [`wirelab::fuzz::is_known_finding`] takes it
/// for the known finding. When the stack is fixed this fails: the entry goes, and so does
/// the finding's arm of `is_known_finding` and its section in fuzz/FINDINGS.md.
#[test]
fn known_findings_still_show_in_their_regression_inputs() {
    let known = [
        // smoltcp 0.14's fast retransmission ignores the peer's window.
        ("fast-retransmit-past-window", "tcp-beyond-window"),
        ("fast-retransmit-past-window-ci", "tcp-beyond-window"),
        // An old duplicate SYN answered after the connection closed (oracle gap).
        ("old-duplicate-syn-after-close", "tcp-ack-beyond-sent"),
    ];
    for (name, rule) in known {
        let path = fuzz_dir().join("regressions/simulation").join(name);
        let data = std::fs::read(&path).expect("reading a fuzz regression input");
        let found = wirelab::fuzz::simulation_violations(&data);
        assert!(
            found
                .iter()
                .any(|(v, is_known)| v.rule == rule && *is_known),
            "{}: expected a known `{rule}` finding, the oracles found: {:?}",
            path.display(),
            found
                .iter()
                .map(|(v, is_known)| format!("{v} (known: {is_known})"))
                .collect::<Vec<_>>()
        );
    }
}
