use std::path::Path;

use anyhow::{Context, Result};
use sync_core::protocol::{self, EnrollRequest, EnrollResponse, PROTOCOL_VERSION};

use crate::app::{Session, emit, save_token, usage};
use crate::client::Client;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The sync server, e.g. http://10.1.2.3:8780.
    #[arg(long, value_name = "URL")]
    server: String,
    /// The one-time code the operator gave (`sync-server device enroll`).
    #[arg(long)]
    code: String,
}

pub fn run(data_dir: &Path, args: Args) -> Result<()> {
    if let Some(mistake) = url_mistake(&args.server) {
        return usage(mistake);
    }
    let mut session = Session::open(data_dir)?;
    // A store set up before devices had keys gets one now.
    let key = session.store.ensure_key(crate::app::random_seed()?)?;
    let mut client = Client::new(&args.server, None, 2)?;
    let req = EnrollRequest {
        version: PROTOCOL_VERSION,
        code: args.code.clone(),
        worker: session.profile.worker.clone(),
        device: session.profile.device.to_string(),
        public_key: Some(serde_bytes::ByteBuf::from(key.public().to_vec())),
    };
    let bytes = client
        .call(reqwest::Method::POST, "/v1/enroll", protocol::encode(&req))
        .context("enrolment failed")?;
    let resp: EnrollResponse = Client::cbor(&bytes)?;
    save_token(data_dir, &resp.token)?;
    session.store.set_server(&args.server, &resp.epoch)?;
    if let Some(role) = sync_core::account::Role::parse(&resp.role) {
        session.store.set_role(role)?;
    }
    emit(
        format!(
            "device {} enrolled at {} for {} ({}) in {}\n",
            session.profile.device,
            args.server,
            resp.worker,
            resp.role,
            resp.grids.join(", ")
        )
        .as_bytes(),
    )
}

/// What is wrong with a server URL this build cannot speak, in plain words.
fn url_mistake(url: &str) -> Option<String> {
    if url.trim() != url {
        return Some(format!("--server `{url}` has spaces around it; give the address alone"));
    }
    if url.starts_with("https://") {
        return Some(format!(
            "--server `{url}`: this build of field speaks plain http:// only (HTTPS is not built in yet); \
             use the server's http:// address on a trusted network"
        ));
    }
    if !url.starts_with("http://") {
        return Some(format!(
            "--server `{url}` must start with http://, e.g. http://10.1.2.3:8780"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_urls_this_build_can_speak_are_taken() {
        assert_eq!(url_mistake("http://10.1.2.3:8780"), None);
        for (url, needle) in [
            ("https://grid.example.org", "plain http:// only"),
            ("http://10.1.2.3:8780 ", "spaces"),
            ("10.1.2.3:8780", "must start with http://"),
            ("ftp://x", "must start with http://"),
        ] {
            let m = url_mistake(url).expect(url);
            assert!(m.contains(needle), "{url}: {m}");
        }
    }
}
