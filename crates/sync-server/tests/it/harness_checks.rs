//! The basic round trip every other test builds on.

use crate::*;

#[test]
fn a_report_reaches_another_device_in_the_same_cell() {
    let mut server = Server::new();
    server.add_worker("w-li", &[HX01, HX02]);
    server.add_worker("w-wang", &[HX02]);
    server.start();
    let a = Device::new("w-li", &[HX01, HX02]);
    let b = Device::new("w-wang", &[HX02]);
    a.enroll(&server);
    b.enroll(&server);

    let id = a.report(&[
        "--category",
        "manhole-cover",
        "--grid",
        HX02,
        "--photo",
        &fixture("manhole-exif.jpg"),
    ]);
    let pushed = a.sync(&[]);
    assert_eq!(pushed["acknowledged"], 1);
    assert_eq!(pushed["photos_uploaded"], 3);
    assert_eq!(a.status()["unsynced_incidents"], 0);

    let pulled = b.sync(&[]);
    assert_eq!(pulled["new_incidents"], 1);
    assert_eq!(pulled["thumbs_fetched"], 1);
    assert_eq!(b.show(&id)["category"], "manhole-cover");
    assert_eq!(a.heads(), b.heads());
    assert_eq!(a.heads(), server_heads(&server));

    // Nothing new: one round trip, well under a kilobyte both ways.
    let noop = a.sync(&[]);
    assert_eq!(noop["round_trips"], 1);
    let bytes = noop["bytes_sent"].as_u64().unwrap() + noop["bytes_received"].as_u64().unwrap();
    assert!(bytes <= 1024, "no-op sync moved {bytes} bytes");
}
