#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sync_fuzz::core_inputs::read_document(data, sync_fuzz::docs::OpenFindings::GoOn);
});
