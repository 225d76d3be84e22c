use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sync_core::protocol::{self, EnrollRequest, EnrollResponse, PROTOCOL_VERSION};

use crate::app::{Session, emit, save_token, usage};
use crate::client::Client;
use crate::tls::Trust;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The sync server, e.g. https://grid.example.cn (http:// only to this
    /// machine, or with --allow-http).
    #[arg(long, value_name = "URL")]
    server: String,
    /// The one-time code the operator gave (`sync-server device enroll`).
    #[arg(long)]
    code: String,
    /// A CA certificate (PEM) to trust besides the system's, for a city's own CA.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Speak plain http:// to a server that is not on this machine: the
    /// token and every record then cross the network readable by anyone on it.
    #[arg(long)]
    allow_http: bool,
}

pub fn run(data_dir: &Path, args: Args) -> Result<()> {
    if let Some(mistake) = url_mistake(&args.server, args.allow_http) {
        return usage(mistake);
    }
    let ca_pem = match &args.ca {
        None => None,
        Some(path) => match std::fs::read_to_string(path) {
            Ok(pem) => Some(pem),
            Err(e) => return usage(format!("cannot read the CA file {}: {e}", path.display())),
        },
    };
    let mut session = Session::open(data_dir)?;
    // A store set up before devices had keys gets one now.
    let key = session.store.ensure_key(crate::app::random_seed()?)?;
    let mut trust = Trust {
        pin: None,
        ca_pem,
        allow_http: args.allow_http,
    };
    let mut client = Client::new(&args.server, None, 2, &trust)?;
    let req = EnrollRequest {
        version: PROTOCOL_VERSION,
        code: args.code.clone(),
        worker: session.profile.worker.clone(),
        device: session.profile.device.to_string(),
        public_key: Some(serde_bytes::ByteBuf::from(key.public().to_vec())),
        label: session.profile.label.clone(),
    };
    let bytes = client
        .call(reqwest::Method::POST, "/v1/enroll", protocol::encode(&req))
        .context("enrolment failed")?;
    let resp: EnrollResponse = Client::cbor(&bytes)?;
    trust.pin = client.shown_key();
    trust.save(data_dir)?;
    save_token(data_dir, &resp.token)?;
    session.store.set_server(&args.server, &resp.epoch)?;
    let moved = adopt_account(&mut session, &resp)?;
    let pinned = trust
        .pin
        .as_deref()
        .map(|p| format!("; server key sha256 {p}"))
        .unwrap_or_default();
    emit(
        format!(
            "device {} enrolled at {} for {} ({}) in {}{moved}{pinned}\n",
            session.profile.device,
            args.server,
            resp.worker,
            resp.role,
            resp.grids.join(", ")
        )
        .as_bytes(),
    )
}

/// The server is the authority for the account: its role, its name and
/// the cells this device may report in replace what `field init` said;
/// with the device's number, what was logged before gets case numbers.
/// Says how the cells changed, if they did.
fn adopt_account(session: &mut Session, resp: &EnrollResponse) -> Result<String> {
    let was = session.profile.grids.clone();
    let account = sync_core::protocol::Account {
        role: resp.role.clone(),
        name: resp.name.clone().unwrap_or_default(),
        grids: resp.grids.clone(),
        number: resp.number,
    };
    session.store.adopt_account(&account)?;
    let numbered = session.store.number_own_cases(crate::app::now())?;
    if numbered > 0 {
        let n = crate::app::count(
            numbered as u64,
            "incident its case number",
            "incidents their case numbers",
        );
        eprintln!("gave {n} logged before the enrolment");
    }
    Ok((!resp.grids.is_empty() && resp.grids != was)
        .then(|| format!(" (the server's cells; this device had {})", was.join(", ")))
        .unwrap_or_default())
}

/// Whether `host` (from a URL) names this machine.
fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The host and the port of an authority (`host:port`, `[v6]:port`).
fn host_port(authority: &str) -> (&str, Option<&str>) {
    match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((host, rest)) => (host, rest.strip_prefix(':')),
            None => (v6, None),
        },
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    }
}

/// What is wrong with a server URL, in plain words.
fn url_mistake(url: &str, allow_http: bool) -> Option<String> {
    if url.trim() != url {
        return Some(format!("--server `{url}` has spaces around it; give the address alone"));
    }
    let (scheme, rest) = match url.split_once("://") {
        Some((s, rest)) if s == "https" || s == "http" => (s, rest),
        _ => {
            return Some(format!(
                "--server `{url}` must start with https://, e.g. https://grid.example.cn"
            ));
        }
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.is_empty() {
        return Some(format!("--server `{url}` names no server after {scheme}://"));
    }
    let (host, port) = host_port(authority);
    if let Some(port) = port.filter(|p| !p.parse::<u16>().is_ok_and(|n| n > 0)) {
        return Some(format!(
            "--server `{url}`: `{port}` is not a port; a port is a number from 1 to 65535"
        ));
    }
    let path = path.trim_end_matches('/');
    if path == "v1" || path.ends_with("/v1") {
        return Some(format!(
            "--server `{url}`: leave `/v1` off; give the server's address alone and field adds the rest"
        ));
    }
    if scheme == "http" && !allow_http && !is_loopback(host) {
        return Some(format!(
            "--server `{url}`: plain http:// would send the device token and every record readable by anyone \
             on the network; use the server's https:// address, or add --allow-http on a network you trust"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_mistakes_are_explained_and_plain_http_needs_loopback_or_a_flag() {
        for url in [
            "https://grid.example.org",
            "https://grid.example.org:8443/",
            "https://10.1.2.3:8780/city/",
            "http://127.0.0.1:8780",
            "http://localhost:8780",
            "http://[::1]:8780",
        ] {
            assert_eq!(url_mistake(url, false), None, "{url}");
        }
        assert_eq!(url_mistake("http://10.1.2.3:8780", true), None);
        for (url, needle) in [
            ("http://10.1.2.3:8780", "--allow-http"),
            ("https://grid.example.org ", "spaces"),
            (" https://grid.example.org", "spaces"),
            ("10.1.2.3:8780", "must start with https://"),
            ("ftp://x", "must start with https://"),
            ("https://grid.example.org/v1", "leave `/v1` off"),
            ("https://grid.example.org/v1/", "leave `/v1` off"),
            ("https://grid.example.org:99999", "`99999` is not a port"),
            ("https://grid.example.org:0", "`0` is not a port"),
            ("https://grid.example.org:http", "`http` is not a port"),
            ("https://", "names no server"),
        ] {
            let m = url_mistake(url, false).expect(url);
            assert!(m.contains(needle), "{url}: {m}");
        }
    }
}
