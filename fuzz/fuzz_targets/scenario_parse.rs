//! Fuzz target `scenario_parse`: see `wirelab::fuzz::scenario_parse`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wirelab::fuzz::scenario_parse(data));
