//! libFuzzer target: `keel_tests::fuzz::proto_messages` on each input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keel_tests::fuzz::proto_messages(data));
