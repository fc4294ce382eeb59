//! Fuzz target `scenario_parse`: see `harness::fuzz::scenario_parse`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::fuzz::scenario_parse(data));
