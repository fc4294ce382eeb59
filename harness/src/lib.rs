//! wirelab's simulator: virtual time, seeded randomness, segments, impairments, apps, capture and checks.

pub mod apps;
pub mod capture;
pub mod check;
pub mod config;
pub mod decode;
pub mod fuzz;
pub mod golden;
pub mod impair;
pub mod library;
pub mod oracle;
pub mod rng;
pub mod scenario;
pub mod sim;
pub mod tap;
pub mod trace;
