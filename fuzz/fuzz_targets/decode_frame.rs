//! Fuzz target `decode_frame`: see `wirelab::fuzz::decode_frame`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wirelab::fuzz::decode_frame(data));
