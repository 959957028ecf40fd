//! cargo-fuzz target: see `pinion_fuzz::superblock`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pinion_fuzz::superblock::run(data);
});
