//! Links the image with `link.ld`, rebuilds when the boot assembly changes, and stamps the
//! build with the git revision (`PEFBOX_GIT`, shown in the banner).
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rerun-if-changed=link.ld");
    println!("cargo:rerun-if-changed=boot");
    // A commit changes the branch's ref file (or packed-refs), not .git/HEAD. Only files
    // that exist are named: cargo reruns a build script on every build for a path that does
    // not (a fresh clone keeps its refs in packed-refs; a worktree has neither), and the
    // image would then rebuild on every `cargo pef run`.
    let mut watch = vec![".git/HEAD".to_string(), ".git/packed-refs".to_string()];
    if let Some(r) = std::fs::read_to_string(format!("{dir}/.git/HEAD"))
        .ok()
        .and_then(|h| h.strip_prefix("ref: ").map(|r| r.trim().to_string()))
    {
        watch.push(format!(".git/{r}"));
    }
    // A loose ref appears under refs/heads on the first commit after a clone.
    watch.push(".git/refs/heads".to_string());
    for w in watch {
        if std::path::Path::new(&dir).join(&w).exists() {
            println!("cargo:rerun-if-changed={w}");
        }
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
