//! Params parsing: any key and value text, through every setter, must give Ok or an error.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\u{0}');
    let (key, value, rest) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let mut s = duet::new_generation_settings();
    let _ = s.set_str(key, value);
    let _ = s.set_int(key, data.len() as i64 - 64);
    let _ = s.set_float(key, f64::from_bits(u64::from_le_bytes(data.get(..8).and_then(|b| b.try_into().ok()).unwrap_or([0; 8]))));
    if let Ok(json) = serde_json_value(rest) {
        let _ = s.set_json(key, &json);
    }
    // Known keys with fuzzed values, then resolution against a vocabulary.
    for spec in duet::generate::GENERATION_SPECS {
        let _ = s.set_str(spec.key, value);
    }
    let _ = duet::GenerationParams::resolve(&duet::new_generation_settings(), &s, 800);
});

fn serde_json_value(text: &str) -> Result<serde_json::Value, ()> {
    serde_json::from_str(text).map_err(|_| ())
}
