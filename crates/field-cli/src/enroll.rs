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
    if !(args.server.starts_with("http://") || args.server.starts_with("https://")) {
        return usage(format!(
            "--server `{}` must start with http:// or https://",
            args.server
        ));
    }
    let mut session = Session::open(data_dir)?;
    let mut client = Client::new(&args.server, None, 2)?;
    let req = EnrollRequest {
        version: PROTOCOL_VERSION,
        code: args.code.clone(),
        worker: session.profile.worker.clone(),
        device: session.profile.device.to_string(),
    };
    let bytes = client
        .call(reqwest::Method::POST, "/v1/enroll", protocol::encode(&req))
        .context("enrolment failed")?;
    let resp: EnrollResponse = Client::cbor(&bytes)?;
    save_token(data_dir, &resp.token)?;
    session.store.set_server(&args.server, &resp.epoch)?;
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
