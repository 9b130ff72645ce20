//! libFuzzer target: `keel_tests::fuzz::patches` on each input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keel_tests::fuzz::patches(data));
