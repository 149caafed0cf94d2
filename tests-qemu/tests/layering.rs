//! The role crates and the edges allowed between them, read from the workspace's own
//! Cargo.toml files (`cargo metadata`), so the compiler's boundaries are also CI's:
//! - the ultravisor (`uv`) never depends on the hypervisor (`hv`), nor `hv` on `uv`, not
//!   even through a third crate or as a dev-dependency: the two meet only at the hcall;
//! - every edge between the workspace's crates is one of [`ALLOWED`]; a new one fails here
//!   until it is added to the table (and so to the README's picture) on purpose;
//! - the portable crates (everything under `crates/`) are `#![forbid(unsafe_code)]` as a
//!   whole, in their crate root.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

/// The workspace's packages and, for each, the workspace packages it names in any
/// dependency table (normal, build or dev), with the crate root of each.
struct Workspace {
    deps: BTreeMap<String, BTreeSet<String>>,
    roots: BTreeMap<String, PathBuf>,
}

fn workspace() -> Workspace {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let packages = meta["packages"].as_array().expect("packages");
    let names: BTreeSet<String> = packages
        .iter()
        .map(|p| p["name"].as_str().expect("name").to_string())
        .collect();
    let mut deps = BTreeMap::new();
    let mut roots = BTreeMap::new();
    for p in packages {
        let name = p["name"].as_str().expect("name").to_string();
        let named: BTreeSet<String> = p["dependencies"]
            .as_array()
            .expect("dependencies")
            .iter()
            .map(|d| d["name"].as_str().expect("dependency name").to_string())
            .filter(|d| names.contains(d))
            .collect();
        if let Some(lib) = p["targets"].as_array().expect("targets").iter().find(|t| {
            t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "lib"))
        }) {
            roots.insert(
                name.clone(),
                PathBuf::from(lib["src_path"].as_str().expect("src_path")),
            );
        }
        deps.insert(name, named);
    }
    Workspace { deps, roots }
}

/// Every edge the design allows between the workspace's crates (package names).
const ALLOWED: &[(&str, &[&str])] = &[
    ("pefbox-papr", &[]),
    ("pefbox-base64", &[]),
    ("pefbox-dtb", &[]),
    ("pefbox-tpm", &[]),
    ("pefbox-radix", &[]),
    ("pefbox-fw", &["pefbox-tpm", "pefbox-base64", "pefbox-dtb"]),
    (
        "pefbox-uv",
        &["pefbox-papr", "pefbox-tpm", "pefbox-fw", "pefbox-dtb"],
    ),
    ("pefbox-hv", &["pefbox-papr", "pefbox-tpm"]),
    ("pefbox-tpm-i2c", &["pefbox-tpm"]),
    // The image crate: arch, platform, target glue, self-tests over every role.
    (
        "pefbox",
        &[
            "pefbox-papr",
            "pefbox-base64",
            "pefbox-dtb",
            "pefbox-tpm",
            "pefbox-fw",
            "pefbox-uv",
            "pefbox-hv",
            "pefbox-radix",
            "pefbox-tpm-i2c",
        ],
    ),
    // The host tools and the tests.
    ("pefbox-xtask", &["pefbox", "pefbox-dtb"]),
];

/// Everything `from` reaches through workspace edges.
fn reach(deps: &BTreeMap<String, BTreeSet<String>>, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from.to_string()];
    while let Some(n) = todo.pop() {
        for d in deps.get(&n).into_iter().flatten() {
            if seen.insert(d.clone()) {
                todo.push(d.clone());
            }
        }
    }
    seen
}

/// What is wrong with the graph, one line per violation.
fn violations(deps: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut bad = Vec::new();
    for (a, b) in [("pefbox-uv", "pefbox-hv"), ("pefbox-hv", "pefbox-uv")] {
        if reach(deps, a).contains(b) {
            bad.push(format!(
                "{a} depends on {b} (directly or through another crate)"
            ));
        }
    }
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    for (pkg, named) in deps {
        let Some(ok) = allowed.get(pkg.as_str()) else {
            bad.push(format!("{pkg} is not in the table of role crates"));
            continue;
        };
        for d in named {
            if !ok.contains(&d.as_str()) {
                bad.push(format!("{pkg} -> {d} is not an allowed edge"));
            }
        }
    }
    bad
}

#[test]
fn role_crates_keep_to_their_allowed_edges() {
    let ws = workspace();
    for (pkg, _) in ALLOWED {
        assert!(ws.deps.contains_key(*pkg), "{pkg} is not in the workspace");
    }
    let bad = violations(&ws.deps);
    assert!(bad.is_empty(), "layering violations:\n{}", bad.join("\n"));
}

/// The check itself: the graph of today with one forbidden edge added, directly or
/// through a third crate, is refused (so the test above cannot pass whatever the graph).
#[test]
fn a_uv_to_hv_edge_is_refused_direct_or_transitive() {
    let ws = workspace();
    // (crate, the edge added to it, the violation that must be reported)
    for (from, to, want) in [
        ("pefbox-uv", "pefbox-hv", "pefbox-uv depends on pefbox-hv"),
        ("pefbox-tpm", "pefbox-uv", "pefbox-hv depends on pefbox-uv"),
    ] {
        let mut deps = ws.deps.clone();
        deps.get_mut(from).unwrap().insert(to.into());
        let bad = violations(&deps);
        assert!(
            bad.iter().any(|l| l.starts_with(want)),
            "{from} -> {to}: {bad:?}"
        );
    }
}

#[test]
fn portable_crates_forbid_unsafe_in_their_root() {
    let ws = workspace();
    let portable: Vec<_> = ws
        .roots
        .iter()
        .filter(|(_, root)| root.components().any(|c| c.as_os_str() == "crates"))
        .collect();
    assert!(portable.len() >= 7, "found only {portable:?}");
    for (pkg, root) in portable {
        let src =
            std::fs::read_to_string(root).unwrap_or_else(|e| panic!("{}: {e}", root.display()));
        assert!(
            src.lines().any(|l| l.trim() == "#![forbid(unsafe_code)]"),
            "{pkg}: {} has no #![forbid(unsafe_code)]",
            root.display()
        );
    }
}
