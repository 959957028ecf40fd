//! cargo-fuzz target: see `pinion_fuzz::client_sessions`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pinion_fuzz::client_sessions::run(data);
});
