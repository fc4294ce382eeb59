//! wirelab's simulator: virtual time, seeded randomness, segments, impairments, apps, capture and checks.

pub mod apps;
pub mod capture;
pub mod check;
pub mod child;
pub mod config;
pub mod conformance;
pub mod decode;
pub mod diff;
pub mod fuzz;
pub mod golden;
pub mod impair;
pub mod library;
pub mod linux_host;
pub mod oracle;
pub mod reference;
pub mod requirements;
pub mod rng;
pub mod scenario;
pub mod script;
pub mod sim;
pub mod tap;
pub mod trace;

/// Says that a test cannot run here because `missing` (a sentence with the fix) is absent, in
/// one `skipped:` line. With `WIRELAB_NO_SKIP` set, as `.ci/run` sets it, a missing
/// requirement fails the test instead, so that CI cannot pass without running everything.
pub fn skip_test(missing: &str) {
    if std::env::var_os("WIRELAB_NO_SKIP").is_some() {
        panic!("WIRELAB_NO_SKIP is set but this test cannot run: {missing}");
    }
    println!("skipped: {missing}");
}
