//! A real PostgreSQL server for the tests, from Debian's packages: one per test binary, started on
//! first use in a temporary directory on a free loopback port, a fresh database per test. As root
//! (CI) the server runs as the `postgres` user, since PostgreSQL refuses to run as root. It stops
//! when the test binary exits (a parent-death signal), and the next run removes what it left.
//!
//! No PostgreSQL on the machine is a failure that says to run `.ci/install`, never a skip.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub struct PgServer {
    pub port: u16,
    /// Commits reach the disk before they return (PostgreSQL's defaults): for a server that is
    /// made to crash. The shared server trades that for speed.
    pub durable: bool,
    /// The superuser the tests (and herald) connect as.
    pub user: String,
    /// The server's `bin` directory (`postgres`, `pg_ctl`...), for tests that restart it.
    pub bin: PathBuf,
    pub data: PathBuf,
    /// The user the server runs as, when the tests run as root.
    pub run_as: Option<(u32, u32)>,
    /// Settings beyond the defaults (`name=value`), such as the bench's statistics extension.
    pub settings: Vec<String>,
}

static SERVER: OnceLock<PgServer> = OnceLock::new();
static DATABASES: AtomicUsize = AtomicUsize::new(0);
static SERVERS: AtomicUsize = AtomicUsize::new(0);

/// The test binary's server, started on first use.
pub fn server() -> &'static PgServer {
    SERVER.get_or_init(|| start(false, &[]).unwrap_or_else(|e| panic!("{e}")))
}

/// A server of its own, durable, for a test that crashes and restarts it; stopped when dropped.
pub fn private_server() -> PrivateServer {
    private_server_with(&[])
}

/// `private_server` with `settings` (`name=value`) beyond the defaults.
pub fn private_server_with(settings: &[&str]) -> PrivateServer {
    PrivateServer(start(true, settings).unwrap_or_else(|e| panic!("{e}")))
}

pub struct PrivateServer(pub PgServer);

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let mut command = Command::new(self.0.bin.join("pg_ctl"));
        command
            .arg("stop")
            .arg("-D")
            .arg(&self.0.data)
            .args(["-m", "immediate"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((uid, gid)) = self.0.run_as {
            command.uid(uid).gid(gid);
        }
        let _ = command.status();
        let _ = std::fs::remove_dir_all(&self.0.data);
    }
}

/// A certificate authority and a server certificate it signed for `localhost`, made with the
/// `openssl` command (`.ci/install` installs it), readable by the server: for TLS tests.
pub struct TestCertificates {
    pub dir: PathBuf,
    pub authority: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl TestCertificates {
    pub fn make() -> TestCertificates {
        // Beside the servers' data, so that a run that dies leaves nothing (`remove_stale`).
        let dir = std::env::temp_dir()
            .join("herald-test-postgres")
            .join(format!(
                "{}-{}-certificates",
                std::process::id(),
                SERVERS.fetch_add(1, Ordering::SeqCst)
            ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let openssl = |args: &[&str]| {
            let output = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .unwrap_or_else(|e| panic!("openssl: {e}: run .ci/install"));
            assert!(
                output.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"][..],
                &ec,
                &["-keyout", "ca.key", "-out", "ca.crt"],
            ]
            .concat()
            .into_iter()
            .chain(["-days", "2", "-subj", "/CN=herald test authority"])
            .collect::<Vec<_>>(),
        );
        openssl(
            &[
                &["req"][..],
                &ec,
                &["-keyout", "server.key", "-out", "server.csr"],
            ]
            .concat()
            .into_iter()
            .chain(["-subj", "/CN=localhost"])
            .collect::<Vec<_>>(),
        );
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ]);
        let server_key = dir.join("server.key");
        // The server refuses a key others may read.
        std::fs::set_permissions(
            &server_key,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        if unsafe { libc::geteuid() } == 0 {
            let (uid, gid) = user_ids("postgres").expect("a postgres user: run .ci/install");
            for file in ["server.crt", "server.key"] {
                std::os::unix::fs::chown(dir.join(file), Some(uid), Some(gid)).unwrap();
            }
        }
        TestCertificates {
            authority: dir.join("ca.crt"),
            server_cert: dir.join("server.crt"),
            server_key,
            dir,
        }
    }

    /// The settings that make a server take TLS connections with these.
    pub fn server_settings(&self) -> Vec<String> {
        vec![
            "ssl=on".into(),
            format!("ssl_cert_file={}", self.server_cert.display()),
            format!("ssl_key_file={}", self.server_key.display()),
        ]
    }
}

impl Drop for TestCertificates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A URL of a new, empty database on the test server.
pub fn fresh_database() -> String {
    let server = server();
    let name = format!(
        "herald_test_{}_{}",
        std::process::id(),
        DATABASES.fetch_add(1, Ordering::SeqCst)
    );
    let mut admin = server.connect("postgres");
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap_or_else(|e| panic!("cannot create the test database {name}: {e}"));
    server.url(&name)
}

impl PgServer {
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{}@127.0.0.1:{}/{database}",
            self.user, self.port
        )
    }

    /// A client on `database`, as another process would have.
    pub fn connect(&self, database: &str) -> postgres::Client {
        let url = self.url(database);
        postgres::Client::connect(&url, postgres::NoTls)
            .unwrap_or_else(|e| panic!("cannot connect to the test server ({url}): {e}"))
    }

    /// Starts the server (again, after `stop`), and waits until it takes connections.
    pub fn start_postgres(&self) {
        let mut command = Command::new(self.bin.join("postgres"));
        command
            .arg("-D")
            .arg(&self.data)
            .args(["-p", &self.port.to_string()])
            .arg("-k")
            .arg(&self.data)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=500",
                "-c",
                "shared_buffers=64MB",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(self.data.join("server.log")).expect("server log"),
            ));
        for setting in &self.settings {
            command.arg("-c").arg(setting);
        }
        if !self.durable {
            command.args([
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]);
        }
        if let Some((uid, gid)) = self.run_as {
            command.uid(uid).gid(gid);
        }
        // Stopped (a fast shutdown) when the thread that started it ends: a thread of its own
        // that lives as long as the test binary.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let (sent, started) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("test-postgres".into())
            .spawn(move || {
                let child = command.spawn();
                let ok = child.is_ok();
                let _ = sent.send(child.map(|_| ()).map_err(|e| e.to_string()));
                if ok {
                    loop {
                        std::thread::park();
                    }
                }
            })
            .expect("a thread for the test server");
        started
            .recv()
            .expect("the server's thread answers")
            .unwrap_or_else(|e| panic!("cannot start postgres: {e}"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if postgres::Client::connect(&self.url("postgres"), postgres::NoTls).is_ok() {
                return;
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.data.join("server.log")).unwrap_or_default();
                panic!("the test PostgreSQL server did not start within 30 s:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server at once (as a crash would, `immediate` mode) or cleanly.
    pub fn stop(&self, immediate: bool) {
        let mode = if immediate { "immediate" } else { "fast" };
        let mut command = Command::new(self.bin.join("pg_ctl"));
        command
            .arg("stop")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", mode, "-w"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((uid, gid)) = self.run_as {
            command.uid(uid).gid(gid);
        }
        let status = command.status().expect("pg_ctl runs");
        assert!(status.success(), "pg_ctl stop -m {mode} failed");
    }
}

fn start(durable: bool, settings: &[&str]) -> Result<PgServer, String> {
    let bin = postgres_bin().ok_or_else(|| {
        "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): run .ci/install, \
         which installs Debian's postgresql package"
            .to_string()
    })?;
    let root = std::env::temp_dir().join("herald-test-postgres");
    std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    remove_stale(&root);
    let data = root.join(format!(
        "{}-{}",
        std::process::id(),
        SERVERS.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
    let run_as = if unsafe { libc::geteuid() } == 0 {
        let ids = user_ids("postgres").ok_or(
            "the tests run as root and there is no postgres user to run the server as: run \
             .ci/install",
        )?;
        let owner = Command::new("chown")
            .arg("-R")
            .arg(format!("{}:{}", ids.0, ids.1))
            .arg(&root)
            .status()
            .map_err(|e| e.to_string())?;
        if !owner.success() {
            return Err(format!(
                "cannot give {} to the postgres user",
                root.display()
            ));
        }
        // The server must be able to reach its directory.
        let _ = Command::new("chmod").arg("755").arg(&root).status();
        Some(ids)
    } else {
        None
    };
    let mut initdb = Command::new(bin.join("initdb"));
    initdb
        .arg("-D")
        .arg(&data)
        .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
        .stdout(Stdio::null());
    if let Some((uid, gid)) = run_as {
        initdb.uid(uid).gid(gid);
    }
    let output = initdb.output().map_err(|e| format!("initdb: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    // The superuser (the tests, herald) logs in freely; every other role (scripts', the
    // application's) with its password, as on a real server.
    std::fs::write(
        data.join("pg_hba.conf"),
        "local all all trust\n\
         host all postgres 127.0.0.1/32 trust\n\
         host all all 127.0.0.1/32 scram-sha-256\n",
    )
    .map_err(|e| format!("pg_hba.conf: {e}"))?;
    if let Some((uid, gid)) = run_as {
        let _ = std::os::unix::fs::chown(data.join("pg_hba.conf"), Some(uid), Some(gid));
    }
    let server = PgServer {
        durable,
        port: free_port(),
        user: "postgres".into(),
        bin,
        data,
        run_as,
        settings: settings.iter().map(|s| s.to_string()).collect(),
    };
    server.start_postgres();
    Ok(server)
}

/// The newest `/usr/lib/postgresql/<version>/bin` that has `initdb`.
fn postgres_bin() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn user_ids(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.first() == Some(&name))
            .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))?
    })
}

/// Data directories of earlier test runs whose process is gone.
fn remove_stale(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.split('-').next())
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
