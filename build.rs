//! Links the image with `link.ld`, rebuilds when the boot assembly changes, and stamps the
//! build with the git revision (`PEFBOX_GIT`, shown in the banner).
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rerun-if-changed=link.ld");
    println!("cargo:rerun-if-changed=boot");
    // A commit changes the branch's ref file (or packed-refs), not .git/HEAD.
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/packed-refs");
    if let Some(r) = std::fs::read_to_string(format!("{dir}/.git/HEAD"))
        .ok()
        .and_then(|h| h.strip_prefix("ref: ").map(|r| r.trim().to_string()))
    {
        println!("cargo:rerun-if-changed=.git/{r}");
    }
    if std::env::var("TARGET").is_ok_and(|t| t.starts_with("powerpc64")) {
        println!("cargo:rustc-link-arg-bins=-T{dir}/link.ld");
    }
    let rev = std::process::Command::new("git")
        .args(["rev-parse", "--short=10", "HEAD"])
        .current_dir(&dir)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=PEFBOX_GIT={rev}");
}
