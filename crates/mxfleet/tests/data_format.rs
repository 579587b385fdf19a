//! The data directory's format marker, as an operator meets it: `mxfleet serve` writes
//! `<data_dir>/FORMAT`, adds it to a directory made before markers existed, and refuses
//! (a non-zero exit, a clear message, no file changed) a directory that a newer mxfleet
//! wrote.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{ConfigHead, Running, free_port, mxfleet};

fn write_config(dir: &Path) -> PathBuf {
    let (port, smtp_port) = (free_port(), free_port());
    let path = dir.join("node.toml");
    let data = dir.join("data");
    let head = ConfigHead::single_node(&data, port, smtp_port, "mx.format.test");
    let relay = "\n[[relay_domains]]\ndomain = \"example.test\"\ncatch_all = true\n";
    std::fs::write(&path, head.render() + relay).unwrap();
    path
}

/// Starts `serve`, waits for `needle` on stderr, stops it with SIGTERM.
fn serve_until(config: &Path, needle: &str) -> Vec<String> {
    let mut node = Running::start(mxfleet().args(["serve", "--config"]).arg(config));
    let mut seen = node.wait_for_line(&node.stderr, needle, Duration::from_secs(30));
    if !seen.iter().any(|l| l.contains("node_ready")) {
        seen.extend(node.wait_for_line(&node.stderr, "node_ready", Duration::from_secs(30)));
    }
    node.signal("TERM");
    assert_eq!(node.wait_exit(Duration::from_secs(30)), 0);
    seen
}

/// Every file under `dir` with its contents.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(at) = pending.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files.insert(path.clone(), Vec::new());
                pending.push(path);
            } else {
                files.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

#[test]
fn serve_marks_its_data_directory_and_refuses_one_a_newer_mxfleet_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let data = dir.path().join("data");
    let marker = data.join("FORMAT");

    // A new directory gets the marker.
    serve_until(&config, "data_format_initialized");
    let text = std::fs::read_to_string(&marker).unwrap();
    assert!(text.contains("storage_format = 1"), "{text}");
    assert!(
        text.contains(&format!(
            "last_opened_by = \"{}\"",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );

    // A directory from a build before markers existed: format 1, marker added.
    std::fs::remove_file(&marker).unwrap();
    serve_until(&config, "data_format_marker_added");
    assert!(
        std::fs::read_to_string(&marker)
            .unwrap()
            .contains("storage_format = 1")
    );

    // A newer mxfleet wrote format 99 here: refused, and nothing is touched.
    std::fs::write(&marker, "storage_format = 99\nlast_opened_by = \"9.9.9\"\n").unwrap();
    let before = tree(&data);
    let mut node = Running::start(mxfleet().args(["serve", "--config"]).arg(&config));
    let code = node.wait_exit(Duration::from_secs(30));
    let stderr: Vec<String> = node.stderr.iter().collect();
    let stderr = stderr.join("\n");
    assert_eq!(code, 65, "EX_DATAERR; stderr:\n{stderr}");
    for part in [
        "node_start_failed",
        &marker.display().to_string(),
        "this data directory was written by mxfleet 9.9.9 with storage format 99",
        "reads formats 1..=1",
        "run a newer binary, or restore from a snapshot",
    ] {
        assert!(stderr.contains(part), "{part:?} not in stderr:\n{stderr}");
    }
    assert!(!stderr.contains("node_ready"), "{stderr}");
    assert_eq!(tree(&data), before, "a refused start changes no file");
}
