//! What the server keeps from other local users and from the network.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::{Device, HX01, Server, fixture};

/// Every folder and file under `root` with its permission bits.
fn modes_under(root: &Path) -> Vec<(String, u32, bool)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
        let name = path.strip_prefix(root).unwrap().display().to_string();
        out.push((name, meta.permissions().mode() & 0o7777, meta.is_dir()));
    }
    out.sort();
    out
}

#[test]
fn the_server_data_dir_is_its_owners_alone_whatever_the_umask() {
    let mut server = Server::new();
    server.open_umask = true;
    std::fs::set_permissions(server.data_dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    server.add_worker("w1", &[HX01]);
    server.start();
    let dev = Device::new("w1", &[HX01]);
    dev.enroll(&server);
    dev.report(&["--category", "manhole-cover", "--photo", &fixture("manhole-exif.jpg")]);
    dev.sync(&[]);
    let modes = modes_under(server.data_dir());
    server.kill();
    let names: Vec<&str> = modes.iter().map(|(n, _, _)| n.as_str()).collect();
    assert!(names.contains(&"server.sqlite3"), "{names:?}");
    assert!(
        names.iter().any(|n| n.starts_with("photos/") && n.len() > 70),
        "{names:?}"
    );
    for (name, mode, is_dir) in &modes {
        let want = if *is_dir { 0o700 } else { 0o600 };
        assert_eq!(*mode, want, "{name:?} is {mode:o} in {modes:?}");
    }
}
