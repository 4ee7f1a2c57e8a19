//! libFuzzer's entry for the `elasticsearch_response` target; the checks are `sluice_fuzz_targets::elasticsearch_response`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz_targets::elasticsearch_response(data));
