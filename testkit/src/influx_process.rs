//! A private InfluxDB 1.x server for one test, so the test may stop and restart it without
//! disturbing the others. Starts in well under a second.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::wait::{free_port, wait_until};

pub struct InfluxProcess {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl InfluxProcess {
    /// Starts `influxd` on a free loopback port with its data in a temporary folder.
    pub async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("opsdeck-influx-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("create a temporary folder");
        let mut process = Self { port: free_port(), dir, child: None };
        process.resume().await;
        process
    }

    pub fn url(&self) -> url::Url {
        format!("http://127.0.0.1:{}", self.port).parse().expect("a valid URL")
    }

    /// Stops the server (as an outage would) and waits until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data, and waits until it answers.
    pub async fn resume(&mut self) {
        let d = &self.dir;
        let child = Command::new("influxd")
            .args(["run", "-config", "/dev/null"])
            .env("INFLUXDB_REPORTING_DISABLED", "true")
            .env("INFLUXDB_BIND_ADDRESS", format!("127.0.0.1:{}", free_port()))
            .env("INFLUXDB_META_DIR", d.join("meta"))
            .env("INFLUXDB_DATA_DIR", d.join("data"))
            .env("INFLUXDB_DATA_WAL_DIR", d.join("wal"))
            .env("INFLUXDB_HTTP_BIND_ADDRESS", format!("127.0.0.1:{}", self.port))
            .env("INFLUXDB_MONITOR_STORE_ENABLED", "false")
            .env("INFLUXDB_HTTP_LOG_ENABLED", "false")
            .env("INFLUXDB_LOGGING_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("influxd runs (scripts/test installs Debian's influxdb package)");
        self.child = Some(child);
        let ping = format!("http://127.0.0.1:{}/ping", self.port);
        let http = reqwest::Client::new();
        wait_until("the private InfluxDB to answer /ping", Duration::from_secs(20), || {
            let request = http.get(&ping).send();
            async move { request.await.ok().filter(|r| r.status().is_success()).map(|_| ()) }
        })
        .await;
    }
}

impl Drop for InfluxProcess {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
