//! Fuzz target `smoltcp_ingress`: see `harness::fuzz::smoltcp_ingress`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::fuzz::smoltcp_ingress(data));
