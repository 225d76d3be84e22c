//! HTTPS end to end: a throw-away CA made here (rcgen), the server
//! serving its certificate, `field` enrolling, syncing and uploading
//! photos over it with the CA given by `--ca`, and refusing a certificate
//! from another CA and a server whose key changed since enrolment. The
//! certificate reloads on SIGHUP.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

use crate::*;

/// A CA that signs server certificates for 127.0.0.1 and localhost.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Ca {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// A server certificate and key for loopback, written as PEM files.
    fn server_files(&self, dir: &Path, key: &KeyPair) -> (PathBuf, PathBuf) {
        let params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        let cert = params.signed_by(key, &self.issuer).unwrap();
        let (cert_path, key_path) = (dir.join("server.crt"), dir.join("server.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    fn write(&self, dir: &Path, name: &str) -> String {
        let path = dir.join(name);
        std::fs::write(&path, &self.pem).unwrap();
        path.to_str().unwrap().to_owned()
    }
}

/// Starts `server` over HTTPS with the certificate in `dir`.
fn start_tls(server: &mut Server, cert: &Path, key: &Path) {
    server.start_with(&["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()]);
    assert!(server.url.starts_with("https://127.0.0.1:"), "{}", server.url);
}

fn sighup(server: &Server) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn enrol_sync_and_photos_over_https_and_a_changed_key_or_foreign_ca_is_refused() {
    let files = tempfile::tempdir().unwrap();
    let ca = Ca::new("Panjin grid CA");
    let ca_file = ca.write(files.path(), "ca.pem");
    let key = KeyPair::generate().unwrap();
    let (cert, key_file) = ca.server_files(files.path(), &key);
    let mut server = Server::new();
    server.add_worker("w1", &[HX01]);
    server.add_worker("w2", &[HX01]);
    start_tls(&mut server, &cert, &key_file);

    // Without the city's CA the certificate is not trusted.
    let stranger = Device::new("w2", &[HX01]);
    let code = server.code("w2");
    let out = stranger.run(&["enroll", "--server", &server.url, "--code", &code]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("not trusted") && err.contains("--ca"),
        "{err}"
    );
    // Another CA's file does not help either.
    let other = Ca::new("somebody else").write(files.path(), "other.pem");
    let out = stranger.run(&["enroll", "--server", &server.url, "--code", &code, "--ca", &other]);
    assert!(!out.status.success());

    // With it: enrolment pins the key; sync and photos go over HTTPS.
    let dev = Device::new("w1", &[HX01]);
    let code = server.code("w1");
    let enrolled = dev.ok(&["enroll", "--server", &server.url, "--code", &code, "--ca", &ca_file]);
    assert!(enrolled.contains("server key sha256 "), "{enrolled}");
    let trust = std::fs::read_to_string(dev.dir.path().join("server-trust.json")).unwrap();
    assert!(trust.contains("\"pin\""), "{trust}");
    let id = dev.report(&["--category", "manhole-cover", "--photo", &fixture("manhole-exif.jpg")]);
    let synced = dev.sync(&[]);
    assert_eq!(synced["acknowledged"], 1, "{synced}");
    assert_eq!(server_heads(&server).len(), 1);
    assert_device_photos_on_server(&server, &dev);

    // A new key under the same name and CA (a stolen CA key, a mis-issued
    // certificate, or someone in between): refused with the sentence.
    let new_key = KeyPair::generate().unwrap();
    ca.server_files(files.path(), &new_key);
    sighup(&server);
    dev.ok(&["update", &id, "--note", "after the key change"]);
    let changed = eventually(PATIENCE, "the server to serve the new key", || {
        let out = dev.run(&["sync", "--retries", "0"]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (!out.status.success() && err.contains("not the one it had at enrolment")).then_some(err)
    });
    assert!(changed.contains("nothing was sent"), "{changed}");

    // A renewed certificate with the enrolled key is taken again, without a restart.
    ca.server_files(files.path(), &key);
    sighup(&server);
    eventually(PATIENCE, "the renewed certificate", || {
        let out = dev.run(&["sync", "--json", "--retries", "0"]);
        out.status.success().then_some(())
    });
    assert!(server.is_running(), "the server reloaded without a restart");
}

#[test]
fn the_dashboard_cookie_is_secure_over_https() {
    let files = tempfile::tempdir().unwrap();
    let ca = Ca::new("Panjin grid CA");
    let key = KeyPair::generate().unwrap();
    let (cert, key_file) = ca.server_files(files.path(), &key);
    let mut server = Server::new();
    server.add_center("hx-center", "HLT-CX-HX");
    let token = server.token("hx-center");
    start_tls(&mut server, &cert, &key_file);
    let http = reqwest::blocking::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap()])
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = http.get(format!("{}/center", server.url)).send().unwrap();
    let login = form.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(login.contains("; Secure"), "{login}");
    let signed = crate::dashboard::sign_in_via(&http, &server.url, &server.url, &token);
    assert_eq!(signed.status(), 303);
    let session: Vec<&str> = signed
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(
        session
            .iter()
            .any(|c| c.starts_with("center_session=") && c.contains("; Secure")),
        "{session:?}"
    );
    // The http:// origin of the same host is another origin.
    let plain_origin = server.url.replacen("https://", "http://", 1);
    let refused = crate::dashboard::sign_in_via(&http, &server.url, &plain_origin, &token);
    assert_eq!(refused.status(), 403);
}

#[test]
fn plain_http_to_another_machine_is_refused_unless_asked_for() {
    let dev = Device::new("w1", &[HX01]);
    let out = dev.run(&[
        "enroll",
        "--server",
        "http://10.255.255.1:8780",
        "--code",
        "AAAA-BBBB-CCCC",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--allow-http") && err.contains("readable by anyone"),
        "{err}"
    );
    let out = dev.run(&[
        "enroll",
        "--server",
        "https://grid.example.cn/v1",
        "--code",
        "AAAA-BBBB-CCCC",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("leave `/v1` off"));
}
