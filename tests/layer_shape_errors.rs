//! Hand-written layer stacks are checked by the compiler too: a declared size that disagrees
//! with a layer's formula fails to compile, naming the layer and the formula.
//!
//! The check is a const assertion, evaluated when the layer is instantiated, so it shows at
//! `cargo build` (not `cargo check`, which never instantiates; the `cnn!` macro reports the
//! same mistakes at `cargo check` already, with the numbers). trybuild only runs `cargo check`,
//! so this test builds each case in `tests/ui-layers/` as a small crate of its own with
//! `cargo build` and looks for the message its `// expect:` line names.

use std::path::Path;
use std::process::Command;

#[test]
fn every_case_fails_to_build_with_its_message() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = root.join("target/ui-layers");
    let mut cases: Vec<_> = std::fs::read_dir(root.join("tests/ui-layers"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    cases.sort();
    assert!(!cases.is_empty());
    for case in cases {
        let source = std::fs::read_to_string(&case).unwrap();
        let expect = source
            .lines()
            .find_map(|l| l.strip_prefix("// expect: "))
            .unwrap_or_else(|| panic!("{}: no `// expect:` line", case.display()));
        let name = case.file_stem().unwrap().to_str().unwrap();
        let dir = work.join(name);
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::write(
            dir.join("Cargo.toml"),
            format!(
                "[package]\nname = \"{name}\"\nversion = \"0.0.0\"\nedition = \"2024\"\n\n\
                 [dependencies]\ncnn = {{ path = {:?} }}\n\n[workspace]\n",
                root.display().to_string()
            ),
        )
        .unwrap();
        std::fs::write(dir.join("src/main.rs"), &source).unwrap();
        let out = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--offline"])
            .current_dir(&dir)
            // one target folder for all cases, so dfdx and cnn are compiled once
            .env("CARGO_TARGET_DIR", work.join("target"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: built, but should not have");
        assert!(
            stderr.contains(expect),
            "{name}: expected `{expect}` in:\n{stderr}"
        );
    }
}
