//! Golden captures for users' programs: a `#[test]` compares a `SimRun`'s capture with a blessed pcapng byte for byte, and `WIRELAB_BLESS=1` writes it (atomically) instead.

use std::path::Path;

use crate::suite::BLESS_ENV;
use crate::SimRun;

/// Compares the capture of `segment` in `run` with the golden file at `golden`; with
/// `WIRELAB_BLESS=1` set, writes the capture there instead (the only way a golden changes).
///
/// # Panics
///
/// When the capture differs from the golden, the golden is missing or broken, or the run
/// kept no capture of `segment`: the message says which, and how to bless.
#[track_caller]
pub fn assert_capture_matches(run: &SimRun, segment: &str, golden: &Path) {
    let Some(capture) = run.capture(segment) else {
        panic!("the run kept no capture of segment `{segment}`");
    };
    if std::env::var_os(BLESS_ENV).is_some_and(|v| v != "0") {
        if let Some(folder) = golden.parent() {
            std::fs::create_dir_all(folder)
                .unwrap_or_else(|e| panic!("creating {}: {e}", folder.display()));
        }
        scenario::golden::write_atomic(golden, capture)
            .unwrap_or_else(|e| panic!("writing {}: {e}", golden.display()));
        return;
    }
    if let Err(mismatch) = scenario::golden::compare_capture(golden, capture) {
        panic!(
            "the capture of segment `{segment}` (seed {}) {mismatch}\nbless with: \
             {BLESS_ENV}=1 cargo test",
            run.report.seed
        );
    }
}
