//! Where the `opsdeck` binary is for tests that run it as a child process but, like the
//! end-to-end crate, get no `CARGO_BIN_EXE_opsdeck` from cargo.

use std::path::PathBuf;

/// `target/<profile>/opsdeck`, found from the running test binary
/// (`target/<profile>/deps/<test>-<hash>`). Panics, saying how to build it, when it is missing.
pub fn opsdeck_binary() -> PathBuf {
    let test = std::env::current_exe().expect("the test binary's path");
    let profile_dir =
        test.parent().and_then(|deps| deps.parent()).expect("the test binary lives in target/<profile>/deps");
    let binary = profile_dir.join(format!("opsdeck{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.is_file(),
        "no opsdeck binary at {}: build it first: cargo build -p server --bin opsdeck",
        binary.display()
    );
    binary
}
