//! Fuzz target `pcap_read`: see `wirelab::fuzz::pcap_read`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wirelab::fuzz::pcap_read(data));
