#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sync_fuzz::photo_input::photo_pipeline(data);
});
