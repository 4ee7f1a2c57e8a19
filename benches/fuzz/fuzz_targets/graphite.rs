//! libFuzzer's entry for the `graphite` target; the checks are `sluice_fuzz_targets::graphite`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz_targets::graphite(data));
