//! wirelab's simulator: virtual time, seeded randomness, segments, impairments, applications, the run loop and its trace.
//!
//! A [`World`] is built from a [`WorldConfig`] (hosts, segments, links, scheduled events), the
//! applications that drive its hosts, and a [`stack::Registry`] that builds each host's stack
//! by name. [`World::run`] plays it to the end in virtual time and returns a [`RunReport`]:
//! the outcome, the applications' reports, the trace and the captures. Nothing here judges a
//! run; that is `wirelab-judge`'s job.

pub mod apps;
pub mod clock;
pub mod config;
pub mod impair;
pub mod library;
pub mod rng;
pub mod trace;
pub mod world;

pub use config::WorldConfig;
pub use world::{run, HostedApp, Outcome, RunError, RunOptions, RunReport, RunStats, World};
