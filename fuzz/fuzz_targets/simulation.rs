//! Fuzz target `simulation`: see `harness::fuzz::simulation`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::fuzz::simulation(data));
