//! cargo-fuzz target: see `pinion_fuzz::framing`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pinion_fuzz::framing::run(data);
});
