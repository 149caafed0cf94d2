//! The image's entry. Placeholder.
#![cfg_attr(target_arch = "powerpc64", no_std, no_main)]
#[cfg(not(target_arch = "powerpc64"))]
fn main() {
    eprintln!("pefbox is a powerpc64 firmware image: run `cargo pef run` to build and boot it");
    std::process::exit(2);
}
