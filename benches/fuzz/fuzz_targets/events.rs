//! libFuzzer's entry for the `events` target; the checks are `sluice_fuzz_targets::events`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz_targets::events(data));
