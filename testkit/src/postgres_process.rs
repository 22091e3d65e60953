//! A private PostgreSQL server for one test, so the test may stop it (an outage) and start it
//! again without disturbing the others. `initdb` + `pg_ctl` from Debian's PostgreSQL 15 (as
//! `scripts/lib/common.sh` `start_postgres` does); as root they run as the `postgres` user.

use std::{path::PathBuf, process::Command};

use opsdeck::db::DatabaseUrl;

use crate::wait::free_port;

pub struct PostgresProcess {
    pub port: u16,
    dir: PathBuf,
    running: bool,
}

fn bin(name: &str) -> PathBuf {
    let debian = PathBuf::from("/usr/lib/postgresql/15/bin").join(name);
    if debian.is_file() { debian } else { PathBuf::from(name) }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|out| out.stdout.starts_with(b"0\n"))
}

/// Runs a PostgreSQL tool, as `postgres` when we are root (initdb refuses root).
fn run(tool: &str, args: &[&str]) {
    let mut command = if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(bin(tool));
        command
    } else {
        Command::new(bin(tool))
    };
    let output = command.args(args).output().unwrap_or_else(|e| panic!("{tool} runs (PostgreSQL 15 installed?): {e}"));
    assert!(
        output.status.success(),
        "{tool} {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl PostgresProcess {
    /// Creates a cluster in a temporary folder and starts it on a free loopback port.
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("opsdeck-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("create a temporary folder");
        if is_root() {
            let owned = Command::new("chown").args(["postgres", &dir.to_string_lossy()]).status();
            assert!(owned.is_ok_and(|s| s.success()), "chown the cluster folder to postgres");
        }
        let data = dir.join("data");
        run("initdb", &["-D", &data.to_string_lossy(), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"]);
        let mut process = Self { port: free_port(), dir, running: false };
        process.resume();
        process
    }

    /// The URL of its `postgres` database (for `TestEnv::admin_database_url`).
    pub fn admin_url(&self) -> DatabaseUrl {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port).parse().expect("a valid URL")
    }

    /// Stops it at once, as a crash or a network cut would look to its clients.
    pub fn stop(&mut self) {
        if self.running {
            run("pg_ctl", &["-D", &self.dir.join("data").to_string_lossy(), "-m", "immediate", "-w", "stop"]);
            self.running = false;
        }
    }

    /// Starts it again on the same port and data; returns when it accepts connections.
    pub fn resume(&mut self) {
        let data = self.dir.join("data");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        run(
            "pg_ctl",
            &[
                "-D",
                &data.to_string_lossy(),
                "-o",
                &options,
                "-l",
                &self.dir.join("log").to_string_lossy(),
                "-w",
                "start",
            ],
        );
        self.running = true;
    }
}

impl Drop for PostgresProcess {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
