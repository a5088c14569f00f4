//! Compile errors of `cnn!`: one case per rule in `tests/ui/`, each with its `.stderr` snapshot.
//! Refresh the snapshots with `TRYBUILD=overwrite cargo test --test macro_ui` and read the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
