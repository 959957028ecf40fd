//! cargo-fuzz target: see `pinion_fuzz::ewah`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pinion_fuzz::ewah::run(data);
});
