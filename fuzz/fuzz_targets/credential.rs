#![no_main]
//! Authorization / X-API-Key / forwarding headers, JWTs, API keys, temporary and
//! refresh tokens: whatever the bytes, no parser may panic.

libfuzzer_sys::fuzz_target!(|data: &[u8]| portcullis::fuzz::credential(data));
