//! The ONNX external-data scanner on arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = duet::runtime::confinement::external_locations_in(data);
});
