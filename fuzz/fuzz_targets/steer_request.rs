#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| creel_engine::fuzzing::steer_request(data));
