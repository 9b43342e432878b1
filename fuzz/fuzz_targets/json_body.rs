#![no_main]
//! JSON request bodies through the depth/NUL check, deserialization and validation.

libfuzzer_sys::fuzz_target!(|data: &[u8]| portcullis::fuzz::json_body(data));
