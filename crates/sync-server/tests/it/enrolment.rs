//! An enrolled device id cannot be taken over by enrolling it again, and a
//! revoked device stays revoked: only an operator's re-enrolment code for
//! that very device enrols it again. Driven over real HTTP with `field`.

use serde_json::Value;

use crate::reconcile::admin_fails;
use crate::*;

/// 401 for a token the server does not accept, 400 for one it does (the
/// empty body is then refused as malformed).
fn token_status(server: &Server, token: &str) -> u16 {
    reqwest::blocking::Client::new()
        .post(format!("{}/v1/manifest", server.url))
        .bearer_auth(token)
        .body(Vec::new())
        .send()
        .expect("the server answers")
        .status()
        .as_u16()
}

/// `field enroll` with this code: exit code and stderr.
fn enroll_with(dev: &Device, server: &Server, code: &str) -> (i32, String) {
    let out = dev.run(&["enroll", "--server", &server.url, "--code", code]);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn device_row(server: &Server, id: &str) -> Value {
    let list: Value = serde_json::from_str(&server.admin(&["device", "list", "--json"])).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("device {id} is listed"))
}

#[test]
fn an_enrolled_device_is_enrolled_again_only_with_a_code_for_it() {
    let mut server = Server::new();
    server.add_worker("w-li", &[HX02]);
    server.add_worker("w-wang", &[HX02]);
    server.start();
    let li = Device::new("w-li", &[HX02]);
    li.enroll(&server);
    let id = device_id(&li);
    let first = token_of(&li);

    // A plain code cannot enrol the same device id again, and is not used up.
    let plain = server.code("w-li");
    let (code, err) = enroll_with(&li, &server, &plain);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("enrolled already") && err.contains("--device"), "{err}");
    assert_eq!(token_status(&server, &first), 400, "the device keeps its token");
    assert_eq!(token_of(&li), first);
    let other = Device::new("w-li", &[HX02]);
    let (code, err) = enroll_with(&other, &server, &plain);
    assert_eq!(code, 0, "the refused attempt used nothing up: {err}");

    // A re-enrolment code is for that device only.
    let again = server.admin(&["device", "enroll", "--worker", "w-li", "--device", &id]);
    let stranger = Device::new("w-li", &[HX02]);
    let (code, err) = enroll_with(&stranger, &server, &again);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("code is unknown, used, expired"), "{err}");
    let (code, err) = enroll_with(&li, &server, &again);
    assert_eq!(code, 0, "{err}");
    let second = token_of(&li);
    assert_ne!(second, first);
    assert_eq!(token_status(&server, &first), 401, "the old token stops working");
    assert_eq!(token_status(&server, &second), 400);
    li.report(&["--category", "lawn"]);
    assert_eq!(li.sync(&[])["acknowledged"], 1, "the re-enrolled device syncs");

    // Codes for another worker's device or a made-up one are refused by the operator's command.
    let (code, err) = admin_fails(&server, &["device", "enroll", "--worker", "w-wang", "--device", &id]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no device"), "{err}");
    let (code, err) = admin_fails(
        &server,
        &["device", "enroll", "--worker", "w-li", "--device", "nonsense"],
    );
    assert_eq!(code, 2, "{err}");
}

#[test]
fn a_revoked_device_stays_revoked() {
    let mut server = Server::new();
    server.add_worker("w-li", &[HX02]);
    server.start();
    let li = Device::new("w-li", &[HX02]);
    li.enroll(&server);
    let id = device_id(&li);
    let token = token_of(&li);
    // A code made before the revocation, for this very device.
    let again = server.admin(&["device", "enroll", "--worker", "w-li", "--device", &id]);
    server.admin(&["device", "revoke", &id]);
    let revoked_at = device_row(&server, &id)["revoked_at"].clone();
    assert!(revoked_at.is_string());

    for code in [again, server.code("w-li")] {
        let (exit, err) = enroll_with(&li, &server, &code);
        assert_ne!(exit, 0, "{err}");
        assert!(err.contains("revoked and stays revoked"), "{err}");
    }
    let (code, err) = admin_fails(&server, &["device", "enroll", "--worker", "w-li", "--device", &id]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("revoked"), "{err}");
    assert_eq!(token_status(&server, &token), 401);
    assert_eq!(
        device_row(&server, &id)["revoked_at"],
        revoked_at,
        "still revoked, as of then"
    );

    // The worker carries on with a new device.
    let fresh = Device::new("w-li", &[HX02]);
    fresh.enroll(&server);
    fresh.report(&["--category", "lawn"]);
    assert_eq!(fresh.sync(&[])["acknowledged"], 1);
}
