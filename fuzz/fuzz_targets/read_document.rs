#![no_main]

//! Saved incidents and changes (see `core_inputs.rs`); a panic while
//! applying changes, which the product catches, is not a crash (see
//! `panics.rs`), one anywhere else is.

libfuzzer_sys::fuzz_target!(init: sync_fuzz::panics::remember(), |data: &[u8]| {
    sync_fuzz::panics::run("read_document", data, &[], || {
        sync_fuzz::core_inputs::read_document(data);
    });
});
