//! The processes the router benchmark compares and feeds: `opsdeck router`, HAProxy and nginx
//! (Debian's packages, generated configs on loopback), each pinned to one core with one worker
//! thread, and upstream processes (this benchmark binary in `upstream` mode) it can kill.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

/// A child process killed when dropped.
pub struct Child {
    pub name: String,
    child: tokio::process::Child,
}

impl Child {
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// SIGKILL, as a crash would.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}

impl Drop for Child {
    /// What it forked goes too: nginx's worker outlives a SIGKILLed master otherwise (and
    /// every run would leave one behind). The child itself is SIGKILLed by `kill_on_drop`.
    fn drop(&mut self) {
        let pid = self.pid();
        if pid == 0 {
            return;
        }
        let forked: Vec<String> = crate::procstat::with_children(pid)
            .into_iter()
            .filter(|child| *child != pid)
            .map(|child| child.to_string())
            .collect();
        if !forked.is_empty() {
            let _ = std::process::Command::new("kill").arg("-KILL").args(&forked).status();
        }
    }
}

fn spawn(name: &str, mut command: tokio::process::Command, log: &Path) -> anyhow::Result<Child> {
    let log_file = std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let child = command
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {name}"))?;
    Ok(Child { name: name.to_owned(), child })
}

/// Waits until `url` answers with a success status (or `any` status when `any_status`).
pub async fn wait_answering(url: &str, any_status: bool, what: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(response) = http.get(url).send().await
            && (any_status || response.status().is_success())
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what} did not answer at {url} within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `taskset -c <core> <program>` (taskset execs, so the pid is the program's).
fn pinned(core: &str, program: impl AsRef<std::ffi::OsStr>) -> tokio::process::Command {
    let mut command = tokio::process::Command::new("taskset");
    command.arg("-c").arg(core).arg(program);
    command
}

/// An upstream: this binary's `upstream` mode on `port`, one worker thread, pinned to `core`.
pub fn upstream(port: u16, core: &str, work_dir: &Path) -> anyhow::Result<Child> {
    let mut command = pinned(core, std::env::current_exe()?);
    command.args(["upstream", "--port", &port.to_string()]).env("TOKIO_WORKER_THREADS", "1");
    spawn(&format!("upstream :{port}"), command, &work_dir.join(format!("upstream-{port}.log")))
}

/// `opsdeck router` on `listen`/`admin`, one tokio worker, pinned to `core`.
pub fn router(
    opsdeck: &Path,
    database_url: &str,
    influx_url: &str,
    listen: SocketAddr,
    admin: SocketAddr,
    core: &str,
    log: &Path,
) -> anyhow::Result<Child> {
    let mut command = pinned(core, opsdeck);
    command
        .args(["router", "--listen", &listen.to_string(), "--admin-listen", &admin.to_string()])
        .env("DATABASE_URL", database_url)
        .env("OPSDECK_INFLUX_URL", influx_url)
        .env("OPSDECK_LOG_FORMAT", "json")
        .env("TOKIO_WORKER_THREADS", "1");
    spawn("opsdeck router", command, log)
}

/// nginx with one worker process, keep-alive to the upstreams, no access log.
pub fn nginx(listen: SocketAddr, upstreams: &[u16], core: &str, dir: &Path) -> anyhow::Result<Child> {
    let temp = dir.join("nginx-tmp");
    std::fs::create_dir_all(&temp)?;
    let servers: String = upstreams.iter().map(|p| format!("    server 127.0.0.1:{p};\n")).collect();
    let t = temp.display();
    let config = format!(
        "worker_processes 1;\ndaemon off;\npid {pid};\nerror_log {err} warn;\n\
         events {{ worker_connections 8192; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {t}/body;\n  proxy_temp_path {t}/proxy;\n\
           fastcgi_temp_path {t}/fcgi;\n  uwsgi_temp_path {t}/uwsgi;\n  scgi_temp_path {t}/scgi;\n\
           upstream bench {{\n{servers}    keepalive 256;\n  }}\n\
           server {{\n    listen {listen};\n    location / {{\n      proxy_pass http://bench;\n\
               proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n    }}\n  }}\n}}\n",
        pid = dir.join("nginx.pid").display(),
        err = dir.join("nginx-error.log").display(),
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, config)?;
    let mut command = pinned(core, "nginx");
    command.arg("-p").arg(dir).arg("-e").arg(dir.join("nginx-error.log")).arg("-c").arg(&path);
    spawn("nginx", command, &dir.join("nginx.log"))
}

/// HAProxy with one thread, connection reuse to the upstreams, no logging.
pub fn haproxy(listen: SocketAddr, upstreams: &[u16], core: &str, dir: &Path) -> anyhow::Result<Child> {
    let servers: String = upstreams.iter().enumerate().map(|(i, p)| format!("  server s{i} 127.0.0.1:{p}\n")).collect();
    let config = format!(
        "global\n  nbthread 1\n  maxconn 4000\n\
         defaults\n  mode http\n  timeout connect 1s\n  timeout client 30s\n  timeout server 30s\n  http-reuse always\n\
         frontend fe\n  bind {listen}\n  default_backend be\n\
         backend be\n  balance roundrobin\n{servers}"
    );
    let path: PathBuf = dir.join("haproxy.cfg");
    std::fs::write(&path, config)?;
    let mut command = pinned(core, "haproxy");
    command.arg("-db").arg("-f").arg(&path);
    spawn("haproxy", command, &dir.join("haproxy.log"))
}
