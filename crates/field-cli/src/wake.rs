//! How `field report` and `field update` wake a running watcher at once:
//! a datagram to a Unix socket in the data dir (owner-only, like the rest
//! of it). Nobody listening is not an error: there is no watcher.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

const SOCKET: &str = "watch.sock";

/// What a datagram asks of the watcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Something new waits to be sent.
    Changed,
    /// SIGTERM or SIGINT: stop after the request in flight.
    Stop,
}

impl Wake {
    fn byte(self) -> u8 {
        match self {
            Wake::Changed => b'c',
            Wake::Stop => b's',
        }
    }
}

fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET)
}

/// Tells a watcher of `data_dir`, if one runs, that there is news.
pub fn nudge(data_dir: &Path) {
    send(data_dir, Wake::Changed);
}

pub fn send(data_dir: &Path, wake: Wake) {
    if let Ok(s) = UnixDatagram::unbound() {
        let _ = s.send_to(&[wake.byte()], socket_path(data_dir));
    }
}

/// The watcher's end.
pub struct Listener {
    socket: UnixDatagram,
    path: PathBuf,
}

impl Listener {
    /// Binds the socket; the caller holds the watcher lock, so a socket
    /// file left there is a dead watcher's and is replaced.
    pub fn bind(data_dir: &Path) -> Result<Listener> {
        let path = socket_path(data_dir);
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path).with_context(|| {
            format!(
                "cannot open the watcher's socket {} (a data dir path over about 100 bytes is too long for one)",
                path.display()
            )
        })?;
        Ok(Listener { socket, path })
    }

    /// Waits up to `limit` for a datagram; `None` when the time ran out.
    /// Every datagram already queued is read, and a stop wins.
    pub fn wait(&self, limit: Duration) -> Result<Option<Wake>> {
        let mut buf = [0u8; 16];
        let limit = limit.max(Duration::from_millis(1));
        self.socket.set_read_timeout(Some(limit))?;
        let first = match self.socket.recv(&mut buf) {
            Ok(n) => Self::decode(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Ok(None);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Ok(None),
            Err(e) => return Err(e).context("the watcher's socket failed"),
        };
        self.socket.set_nonblocking(true)?;
        let mut wake = first;
        while let Ok(n) = self.socket.recv(&mut buf) {
            if Self::decode(&buf[..n]) == Wake::Stop {
                wake = Wake::Stop;
            }
        }
        self.socket.set_nonblocking(false)?;
        Ok(Some(wake))
    }

    fn decode(bytes: &[u8]) -> Wake {
        if bytes.contains(&Wake::Stop.byte()) {
            Wake::Stop
        } else {
            Wake::Changed
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
