//! Test binaries whose tests need something a machine may lack (lwIP, root, tshark): each test is a libtest-mimic trial, `ignored` with the reason in cargo test's own summary where its need is missing, and failed instead when `WIRELAB_NO_SKIP` is set, as CI sets it.
//!
//! ```no_run
//! // tests/with_tshark.rs, with `harness = false` for it in Cargo.toml
//! fn tshark_missing() -> Option<String> {
//!     let found = std::process::Command::new("tshark").arg("-v").output().is_ok();
//!     (!found).then(|| "tshark is missing: apt-get install tshark".to_string())
//! }
//!
//! fn opens_every_capture() { /* asserts */ }
//!
//! fn main() {
//!     let tshark = tshark_missing();
//!     wirelab::needs::run(vec![
//!         wirelab::needs::test("opens_every_capture", opens_every_capture).needs(tshark),
//!     ])
//! }
//! ```

use libtest_mimic::{Arguments, Completion, Trial};

use crate::suite::NO_SKIP_ENV;

/// One test of such a binary: a function that panics when it fails, and what it needs.
pub struct Test {
    name: &'static str,
    run: fn(),
    missing: Option<String>,
}

/// The test `name`, which runs `run`.
pub fn test(name: &'static str, run: fn()) -> Test {
    Test {
        name,
        run,
        missing: None,
    }
}

impl Test {
    /// What this machine lacks for the test, if anything: a sentence with the fix.
    pub fn needs(mut self, missing: Option<String>) -> Test {
        if self.missing.is_none() {
            self.missing = missing;
        }
        self
    }
}

/// Runs the tests cargo test asks for and exits with libtest's exit code.
pub fn run(tests: Vec<Test>) -> ! {
    let args = Arguments::from_args();
    let trials = tests
        .into_iter()
        .map(|test| {
            Trial::ignorable_test(test.name, move || match test.missing {
                Some(missing) if std::env::var_os(NO_SKIP_ENV).is_some() => {
                    Err(format!("{NO_SKIP_ENV} is set but this test cannot run: {missing}").into())
                }
                Some(missing) => Ok(Completion::ignored_with(missing)),
                None => {
                    (test.run)();
                    Ok(Completion::Completed)
                }
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit()
}
