//! libFuzzer's entry for the `diamond` target; the checks are `sluice_fuzz_targets::diamond`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz_targets::diamond(data));
