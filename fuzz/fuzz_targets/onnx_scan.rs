//! The ONNX external-data scanner on arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = duet::model::confinement::external_locations_in(data);
});
