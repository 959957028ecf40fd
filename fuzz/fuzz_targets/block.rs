//! cargo-fuzz target: see `pinion_fuzz::block`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pinion_fuzz::block::run(data);
});
