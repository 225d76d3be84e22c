//! bench's one integration-test binary: the quick mode runs end to end
//! (real `sync-server` and `field` processes on loopback) and writes a
//! table with a row for every figure. Timings are not asserted: benchmarks
//! are not tests.

#[test]
fn quick_mode_writes_every_figure() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("benchmarks.md");
    std::fs::write(&out, format!("old figures\n{}\nkept analysis\n", bench::KEEP_MARKER)).unwrap();
    let report = bench::run(&bench::Config {
        quick: true,
        only: vec![],
        runs: 5,
        out: Some(out.clone()),
    })
    .unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.starts_with(&report.markdown), "the file holds the printed table");
    assert!(!text.contains("old figures"), "old figures are replaced");
    assert!(text.ends_with("kept analysis\n"), "text below the marker is kept");
    for line in [
        "- CPU: ",
        "- Memory: ",
        "- OS: ",
        "- Compiler: ",
        "| figure | workload | median |",
    ] {
        assert!(text.contains(line), "no `{line}` in\n{text}");
    }
    for figure in bench::FIGURES {
        let rows = text.lines().filter(|l| l.starts_with(&format!("| {figure} |"))).count();
        assert_eq!(rows, 1, "figure `{figure}` should have one row in\n{text}");
    }
    // Protocol facts, not timings: a sync with nothing to do is one round
    // trip, and stock sync is beside every figure that has a baseline.
    let row = |f: &str| report.rows.iter().find(|r| r.figure == f).unwrap();
    assert_eq!(row(bench::NOOP_RT).ours.max(), 1.0);
    for f in [
        bench::NOOP_BYTES,
        bench::NOOP_SERVER,
        bench::EDIT_WIRE,
        bench::NEW_RATIO,
        bench::NEW_RT,
    ] {
        assert!(row(f).baseline.is_some(), "{f} has no baseline");
    }
}
