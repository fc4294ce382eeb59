//! Fuzz target `checksum_agreement`: see `harness::fuzz::checksum_agreement`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::fuzz::checksum_agreement(data));
