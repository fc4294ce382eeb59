//! Scenario files and conformance scripts: the format and its located errors, checking a run, goldens, the RFC requirement catalogue and matrix, and the runner shared by the command line, `cargo test` and users' suites.

pub mod check;
pub mod child;
pub mod conformance;
pub mod folder;
pub mod format;
pub mod golden;
mod locate;
pub mod requirements;
pub mod runner;
pub mod script;

pub use check::{check_on, Checked};
pub use format::{load, parse, Scenario, ScenarioError};
