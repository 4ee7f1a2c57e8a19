//! libFuzzer's entry for the `influx_response` target; the checks are `sluice_fuzz_targets::influx_response`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz_targets::influx_response(data));
