//! Fuzz target `checksum_agreement`: see `wirelab::fuzz::checksum_agreement`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wirelab::fuzz::checksum_agreement(data));
