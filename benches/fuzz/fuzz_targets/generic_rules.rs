//! libFuzzer's entry for the `generic_rules` target; the checks are `sluice_fuzz_targets::generic_rules`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz_targets::generic_rules(data));
