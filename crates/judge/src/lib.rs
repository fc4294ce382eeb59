//! Judging a run: the expectations a scenario states, the trace oracles every run must satisfy, the differential comparison of two stacks' runs, and turmoil's application-level reference.
//!
//! Everything here reads a finished [`sim::RunReport`] (or captures) and returns verdicts as
//! data: lists of results and violations, never a panic on the first problem.

pub mod diff;
pub mod expect;
pub mod oracle;
pub mod reference;
