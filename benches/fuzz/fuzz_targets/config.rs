//! libFuzzer's entry for the `config` target; the checks are `sluice_fuzz_targets::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz_targets::config(data));
