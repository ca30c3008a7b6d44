//! Index files: any bytes load or fail with an error, never allocate what they only claim.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("fuzz.idx");
    if let Ok(index) = duet::tasks::index::Index::from_bytes(data, path) {
        let _ = index.len();
    }
    // The same bytes with a valid checksum appended reach the parser behind the checksum.
    if data.len() >= 8 {
        let mut with_sum = data.to_vec();
        let sum = data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3));
        with_sum.extend_from_slice(&sum.to_le_bytes());
        let _ = duet::tasks::index::Index::from_bytes(&with_sum, path);
    }
});
