//! Puts the commit the binary was built from into `sluice --version`, so that a report from a
//! running sluice names exactly the code it ran. `SLUICE_GIT_COMMIT` wins (for builds from a
//! source archive or a packaging tool); outside a git checkout the commit is `unknown`.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=SLUICE_GIT_COMMIT");
    let commit = std::env::var("SLUICE_GIT_COMMIT")
        .ok()
        .filter(|commit| !commit.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=SLUICE_GIT_COMMIT={commit}");
    // A new commit moves HEAD (a checkout) or the branch it points at (a commit): either one
    // rebuilds this crate, so `--version` never names an older commit than the code.
    for moved in ["HEAD", "refs/heads"] {
        if let Some(path) = git(&["rev-parse", "--git-path", moved]) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"])
        && let Some(path) = git(&["rev-parse", "--git-path", &branch])
    {
        println!("cargo:rerun-if-changed={path}");
    }
}

/// A git answer's first line, or `None` when git is missing or the tree is not a checkout.
fn git(arguments: &[&str]) -> Option<String> {
    let output = Command::new("git").args(arguments).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let line = text.lines().next()?.trim().to_owned();
    (output.status.success() && !line.is_empty()).then_some(line)
}
