//! Garage as the S3-compatible photo store of the tests and the benchmark.

/// How long a Garage command may keep failing while the node starts.
const PATIENCE: std::time::Duration = std::time::Duration::from_secs(120);

/// Garage: one server per process (a one-node layout and one key),
/// started on first use from `GARAGE_BIN` (what `cargo xtask test`
/// builds), the xtask's cache, or `garage` on the PATH; a bucket per
/// sync-server. It stops when the process that started it does.
pub struct Garage {
    /// The shell that runs Garage and stops it with this process; never
    /// waited for, it outlives every test.
    _watcher: std::process::Child,
    bin: std::path::PathBuf,
    config: std::path::PathBuf,
    pub endpoint: String,
    pub key_id: String,
    pub secret: String,
}

fn garage_bin() -> std::path::PathBuf {
    if let Some(bin) = std::env::var_os("GARAGE_BIN") {
        return bin.into();
    }
    let cached =
        std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache/grid-sync/garage-2.5.0/bin/garage"));
    match cached {
        Some(c) if c.is_file() => c,
        _ => "garage".into(),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Garage {
    pub fn get() -> &'static Garage {
        static GARAGE: std::sync::OnceLock<Garage> = std::sync::OnceLock::new();
        GARAGE.get_or_init(Garage::start)
    }

    fn start() -> Garage {
        let dir = tempfile::Builder::new().prefix("garage-").tempdir().unwrap().keep();
        let (s3, rpc) = (free_port(), free_port());
        let secret: String = (0..32).map(|i| format!("{:02x}", (i * 37 + 11) as u8)).collect();
        let config = dir.join("garage.toml");
        std::fs::write(
            &config,
            format!(
                "metadata_dir = \"{d}/meta\"\ndata_dir = \"{d}/data\"\ndb_engine = \"sqlite\"\n\
                 replication_factor = 1\nrpc_bind_addr = \"127.0.0.1:{rpc}\"\nrpc_public_addr = \"127.0.0.1:{rpc}\"\n\
                 rpc_secret = \"{secret}\"\n[s3_api]\ns3_region = \"garage\"\napi_bind_addr = \"127.0.0.1:{s3}\"\n\
                 root_domain = \".s3.garage.localhost\"\n",
                d = dir.display()
            ),
        )
        .unwrap();
        let bin = garage_bin();
        // A watcher shell stops Garage once this test process is gone.
        let script =
            "\"$0\" -c \"$1\" server >\"$2\" 2>&1 & g=$!; while kill -0 $PPID 2>/dev/null; do sleep 1; done; kill $g";
        let watcher = std::process::Command::new("sh")
            .args(["-c", script])
            .arg(&bin)
            .arg(&config)
            .arg(dir.join("garage.log"))
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start Garage ({e}); `cargo xtask test` builds it"));
        let mut g = Garage {
            _watcher: watcher,
            bin,
            config,
            endpoint: format!("http://127.0.0.1:{s3}"),
            key_id: String::new(),
            secret: String::new(),
        };
        g.set_up();
        g
    }

    /// `garage -c CONFIG ARGS`, its stdout; retried while the node starts.
    fn run(&self, args: &[&str]) -> String {
        let end = std::time::Instant::now() + PATIENCE;
        loop {
            let out = std::process::Command::new(&self.bin)
                .arg("-c")
                .arg(&self.config)
                .args(args)
                .output()
                .unwrap_or_else(|e| panic!("cannot run {} ({e})", self.bin.display()));
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            assert!(
                std::time::Instant::now() < end,
                "garage {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// A one-node layout and the key every test bucket is shared with.
    fn set_up(&mut self) {
        let id = self.run(&["node", "id", "-q"]);
        let id = id.trim().split('@').next().unwrap().to_owned();
        self.run(&["layout", "assign", "-z", "dc1", "-c", "1G", &id]);
        self.run(&["layout", "apply", "--version", "1"]);
        let key = self.run(&["key", "create", "it-key"]);
        let field = |name: &str| {
            key.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_owned())
                .unwrap_or_else(|| panic!("no {name} in {key}"))
        };
        self.key_id = field("Key ID:");
        self.secret = field("Secret key:");
    }

    /// A new bucket the key may read and write.
    pub fn bucket(&'static self) -> Bucket {
        let name = format!("it-{}", &uuid::Uuid::new_v4().simple().to_string()[..20]);
        self.run(&["bucket", "create", &name]);
        self.run(&[
            "bucket", "allow", "--read", "--write", "--owner", &name, "--key", "it-key",
        ]);
        Bucket { garage: self, name }
    }
}

/// One test server's bucket, and a client of it for the checks.
pub struct Bucket {
    garage: &'static Garage,
    pub name: String,
}

impl Bucket {
    /// The server's `--photos`: Garage, or `via` (a proxy in front of it).
    pub fn url(&self, via: Option<&str>) -> String {
        let endpoint = via.unwrap_or(&self.garage.endpoint);
        format!("s3://{}?endpoint={endpoint}&region=garage", self.name)
    }

    /// The environment the server reads its credentials from.
    pub fn env(&self) -> [(&'static str, &str); 2] {
        [
            ("AWS_ACCESS_KEY_ID", self.garage.key_id.as_str()),
            ("AWS_SECRET_ACCESS_KEY", self.garage.secret.as_str()),
        ]
    }

    fn client(&self) -> (object_store::aws::AmazonS3, tokio::runtime::Runtime) {
        let store = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(&self.name)
            .with_endpoint(&self.garage.endpoint)
            .with_allow_http(true)
            .with_region("garage")
            .with_access_key_id(&self.garage.key_id)
            .with_secret_access_key(&self.garage.secret)
            .build()
            .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        (store, rt)
    }

    /// An object's bytes, if it is there.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        use object_store::ObjectStoreExt;
        let (store, rt) = self.client();
        let path = object_store::path::Path::from(key);
        rt.block_on(async { store.get(&path).await?.bytes().await })
            .ok()
            .map(|b| b.to_vec())
    }

    /// Every object under `prefix`, in key order, with its size.
    pub fn list(&self, prefix: &str) -> Vec<(String, u64)> {
        use futures::TryStreamExt;
        let (store, rt) = self.client();
        let prefix = object_store::path::Path::from(prefix);
        let mut out: Vec<(String, u64)> = rt
            .block_on(object_store::ObjectStore::list(&store, Some(&prefix)).try_collect::<Vec<_>>())
            .unwrap()
            .into_iter()
            .map(|m| (m.location.to_string(), m.size))
            .collect();
        out.sort();
        out
    }

    pub fn put(&self, key: &str, bytes: &[u8]) {
        use object_store::ObjectStoreExt;
        let (store, rt) = self.client();
        let path = object_store::path::Path::from(key);
        rt.block_on(store.put(&path, bytes.to_vec().into())).unwrap();
    }
}
