//! cargo-fuzz target: see `pinion_fuzz::header`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pinion_fuzz::header::run(data);
});
