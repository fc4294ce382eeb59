//! Fuzz target `decode_frame`: see `harness::fuzz::decode_frame`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::fuzz::decode_frame(data));
