//! Every conformance script under `scenarios/scripts/` on every backend: one test each, judged against the findings the script records.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use harness::config::StackKind;
use harness::script::{self, Verdict};
use libtest_mimic::{Arguments, Failed, Trial};

fn scripts_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/scripts")
}

fn main() -> ExitCode {
    let args = Arguments::from_args();
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
        for (backend, kind) in [("smoltcp", StackKind::Smoltcp), ("lwip", StackKind::Lwip)] {
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
    libtest_mimic::run(&args, trials).exit_code()
}

fn run_one(path: &Path, root: &Path, kind: StackKind) -> Result<(), Failed> {
    if kind == StackKind::Lwip {
        if let Err(missing) = stack::lwip::available() {
            harness::skip_test(&missing.to_string());
            return Ok(());
        }
    }
    let script = script::load(path, root).map_err(|e| Failed::from(e.to_string()))?;
    let run = script::run(&script, kind, 1);
    let again = script::run(&script, kind, 1);
    if run.capture != again.capture || run.trace != again.trace {
        return Err("two runs of the same script and seed differ".into());
    }
    match script::judge(&script, &run) {
        Verdict::Passed | Verdict::KnownFailure(_) => Ok(()),
        Verdict::Unexpected(message) => {
            Err(format!("{message}\n--- trace ---\n{}", run.trace).into())
        }
    }
}
