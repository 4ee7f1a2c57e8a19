//! libFuzzer's entry for the `groups` target; the checks are `sluice_fuzz_targets::groups`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz_targets::groups(data));
