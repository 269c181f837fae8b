//! The committed header is exactly what cbindgen generates from the crate: regenerated and
//! compared here (CI runs it), rewritten with `SHADOWATTN_BLESS=1`.

use std::path::Path;

#[test]
fn the_committed_header_is_cbindgens_output() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).unwrap();
    let bindings = cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .expect("cbindgen reads the crate");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let path = dir.join("include/shadowattn.h");
    if std::env::var_os("SHADOWATTN_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} differs from cbindgen's output; regenerate it with \
         `SHADOWATTN_BLESS=1 cargo test -p shadowattn-capi --test header` and commit it",
        path.display()
    );
}
