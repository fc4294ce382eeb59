//! Fuzz target `smoltcp_ingress`: see `wirelab::fuzz::smoltcp_ingress`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wirelab::fuzz::smoltcp_ingress(data));
