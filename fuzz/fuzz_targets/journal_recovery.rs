//! cargo-fuzz target: see `pinion_fuzz::journal_recovery`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pinion_fuzz::journal_recovery::run(data);
});
