//! Gives libduet.so its SONAME, libduet.so.<ABI major> (DUET_ABI_MAJOR in src/ffi/plugin.rs).

fn main() {
    println!("cargo:rerun-if-changed=src/ffi/plugin.rs");
    let plugin = std::fs::read_to_string("src/ffi/plugin.rs").expect("src/ffi/plugin.rs");
    let major = plugin
        .lines()
        .find_map(|l| l.strip_prefix("pub const DUET_ABI_MAJOR: u32 = "))
        .and_then(|rest| rest.trim_end_matches(';').trim().parse::<u32>().ok())
        .expect("DUET_ABI_MAJOR in src/ffi/plugin.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libduet.so.{major}");
    }
}
