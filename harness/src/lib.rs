//! wirelab: a deterministic network lab and conformance harness for user-space TCP/IP stacks.
//!
//! A seeded virtual-time simulator runs many stack instances on simulated Ethernet segments
//! under loss, reordering, duplication, corruption, latency and partitions; every frame goes
//! to a pcap capture and a decoded trace, and runs are compared with blessed goldens.
//!
//! This crate is what a stack's author depends on:
//!
//! - implement [`Stack`] for your stack (frames in, frames out, time as a parameter, socket
//!   calls), and
//! - run wirelab's scenario library against it with a [`Suite`] in a `harness = false` test:
//!
//! ```no_run
//! use wirelab::backends::smoltcp::SmoltcpStack as MyStack; // your stack here
//!
//! wirelab::Suite::library().stack("mystack", MyStack::new).run()
//! ```
//!
//! The layers below are re-exported whole, each a crate with one job, depending only on those
//! listed before it: [`stack`] (the trait and the registry of stacks by name), [`plugin`]
//! (stacks in other processes and languages), [`wire`]
//! (frames, checksums, captures), [`backends`] (smoltcp, lwIP, the Linux kernel), [`sim`] (the
//! simulator), [`judge`] (expectations, oracles, differential comparison, the turmoil
//! reference) and [`scenario`] (scenario files, scripts, goldens, the conformance matrix and
//! the runner).
//!
//! Your own async programs run on simulated hosts too, over any of these stacks, with
//! [`Sim`]: [`net`] has tokio-shaped sockets and [`time`] virtual-time timers.
#![warn(missing_docs)]

/// Sockets for programs on simulated hosts, shaped as tokio's (see [`Sim`]).
pub use ::net::net;
/// Virtual time for programs on simulated hosts (see [`Sim`]).
pub use ::net::time;
pub use ::net::{
    spawn, yield_now, JoinHandle, ProgramEnd, ProgramOutcome, ProgramResult, Sim, SimBuilder,
    SimError, SimRun,
};
pub use backends;
pub use judge;
pub use plugin;
pub use scenario;
pub use sim;
pub use stack;
pub use wire;

pub mod fuzz;
pub mod golden_capture;
pub mod needs;
pub mod suite;

pub use scenario::{Checked, Scenario};
pub use sim::{RunReport, World, WorldConfig};
pub use stack::{BuildError, Registry, Stack, StackConfig, StackFactory};
pub use suite::Suite;

/// Every built-in stack (`smoltcp`, `lwip`, `linux`), registered by name: what the `wirelab`
/// command runs with, and what a [`Suite`] starts from.
pub fn builtin_stacks() -> Registry {
    backends::builtin()
}

/// The built-in stacks and those of the plug-ins file at `path` (see [`plugin::config`]).
pub fn stacks_with_plugins(path: &std::path::Path) -> Result<Registry, String> {
    let mut stacks = builtin_stacks();
    plugin::config::register_from(path, &mut stacks)?;
    Ok(stacks)
}

/// Says that a test cannot run here because `missing` (a sentence with the fix) is absent, in
/// one `skipped:` line. With `WIRELAB_NO_SKIP` set, as `.ci/run` sets it, a missing
/// requirement fails the test instead, so that CI cannot pass without running everything.
pub fn skip_test(missing: &str) {
    if std::env::var_os(suite::NO_SKIP_ENV).is_some() {
        panic!("WIRELAB_NO_SKIP is set but this test cannot run: {missing}");
    }
    println!("skipped: {missing}");
}
