//! Fuzz target `simulation`: see `wirelab::fuzz::simulation`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wirelab::fuzz::simulation(data));
