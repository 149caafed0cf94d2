//! Links the image with `link.ld` and rebuilds when the boot assembly changes.
//! Only the powerpc64 image is affected; host builds of the library ignore this.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rerun-if-changed=link.ld");
    println!("cargo:rerun-if-changed=boot");
    if std::env::var("TARGET").is_ok_and(|t| t.starts_with("powerpc64")) {
        println!("cargo:rustc-link-arg-bins=-T{dir}/link.ld");
    }
}
