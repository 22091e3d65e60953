//! A client of HAProxy's runtime API (the `stats socket … level admin` CLI): one command per
//! connection, the answer read to the end, and the tables it prints (`show servers state`,
//! `show stat`) parsed by their header line so column order changes don't break us.

use std::{collections::HashMap, net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::{Context, bail};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How long one command may take (connect, send, answer) before we give up on HAProxy.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the runtime API listens: a unix socket path, or a TCP address such as `127.0.0.1:9999`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeSocket {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl std::str::FromStr for RuntimeSocket {
    type Err = String;

    /// `ipv4:port` / `[ipv6]:port` is TCP; anything else is a unix socket path.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        if value.is_empty() {
            return Err("give the HAProxy stats socket: a unix socket path or host:port".to_owned());
        }
        Ok(match value.parse::<SocketAddr>() {
            Ok(address) => Self::Tcp(address),
            Err(_) => Self::Unix(PathBuf::from(value)),
        })
    }
}

impl std::fmt::Display for RuntimeSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "{}", path.display()),
            Self::Tcp(address) => write!(f, "{address}"),
        }
    }
}

impl RuntimeSocket {
    /// Sends one command and returns HAProxy's whole answer (it closes the connection after a
    /// command when the session is not in interactive mode).
    pub async fn send(&self, command: &str) -> anyhow::Result<String> {
        let exchange = async {
            match self {
                Self::Unix(path) => exchange(tokio::net::UnixStream::connect(path).await?, command).await,
                Self::Tcp(address) => exchange(tokio::net::TcpStream::connect(address).await?, command).await,
            }
        };
        tokio::time::timeout(COMMAND_TIMEOUT, exchange)
            .await
            .map_err(|_| anyhow::anyhow!("no answer within {COMMAND_TIMEOUT:?}"))
            .and_then(|answer| answer.map_err(anyhow::Error::from))
            .with_context(|| format!("HAProxy runtime API at {self}: command `{command}`"))
    }

    /// Sends a command that changes something; HAProxy answers those with nothing or one of
    /// `accepted` (e.g. `New server registered.`), anything else is its error message.
    pub async fn change(&self, command: &str, accepted: &[&str]) -> anyhow::Result<()> {
        let answer = self.send(command).await?;
        let answer = answer.trim();
        if answer.is_empty() || accepted.iter().any(|ok| answer.starts_with(ok)) {
            return Ok(());
        }
        bail!("HAProxy refused `{command}` on {self}: {answer}")
    }

    /// `show servers state`: every server of every backend.
    pub async fn servers_state(&self) -> anyhow::Result<Vec<ServerState>> {
        let answer = self.send("show servers state").await?;
        parse_servers_state(&answer).with_context(|| format!("reading `show servers state` from {self}"))
    }

    /// Current sessions per (backend, server), from `show stat`.
    pub async fn current_sessions(&self) -> anyhow::Result<HashMap<(String, String), u64>> {
        let answer = self.send("show stat").await?;
        parse_current_sessions(&answer).with_context(|| format!("reading `show stat` from {self}"))
    }

    /// The names of all backends (`show backend`).
    pub async fn backends(&self) -> anyhow::Result<Vec<String>> {
        let answer = self.send("show backend").await?;
        Ok(answer
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| l.trim().to_owned())
            .collect())
    }
}

async fn exchange(mut stream: impl AsyncRead + AsyncWrite + Unpin, command: &str) -> std::io::Result<String> {
    stream.write_all(command.as_bytes()).await?;
    stream.write_all(b"\n").await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// A server as HAProxy has it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerState {
    pub backend: String,
    pub server: String,
    pub address: String,
    pub port: u16,
    /// `srv_admin_state` bits: 0x01 forced maintenance, 0x08 forced drain (others inherited).
    pub admin_state: u32,
    /// The weight set by the user (`srv_uweight`).
    pub weight: u16,
}

impl ServerState {
    pub fn in_maintenance(&self) -> bool {
        self.admin_state & 0x01 != 0
    }

    pub fn draining(&self) -> bool {
        self.admin_state & 0x08 != 0
    }
}

/// Parses `show servers state` (format version 1: a version line, a `# be_id be_name …` header,
/// then one space-separated line per server).
pub fn parse_servers_state(answer: &str) -> anyhow::Result<Vec<ServerState>> {
    let mut columns: Option<HashMap<&str, usize>> = None;
    let mut servers = Vec::new();
    for line in answer.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(header) = line.strip_prefix('#') {
            columns = Some(header.split_whitespace().enumerate().map(|(i, name)| (name, i)).collect());
            continue;
        }
        let Some(columns) = &columns else { continue }; // the format version line
        let fields: Vec<&str> = line.split_whitespace().collect();
        let field = |name: &str| -> anyhow::Result<&str> {
            let index = *columns.get(name).with_context(|| format!("no column {name} in the header"))?;
            fields.get(index).copied().with_context(|| format!("line {line:?} has no {name}"))
        };
        servers.push(ServerState {
            backend: field("be_name")?.to_owned(),
            server: field("srv_name")?.to_owned(),
            address: field("srv_addr")?.to_owned(),
            port: field("srv_port")?.parse().with_context(|| format!("srv_port of {line:?}"))?,
            admin_state: field("srv_admin_state")?.parse().with_context(|| format!("srv_admin_state of {line:?}"))?,
            weight: field("srv_uweight")?.parse().with_context(|| format!("srv_uweight of {line:?}"))?,
        });
    }
    Ok(servers)
}

/// Parses the `scur` column of `show stat` (CSV with a `# pxname,svname,…` header) for servers.
pub fn parse_current_sessions(answer: &str) -> anyhow::Result<HashMap<(String, String), u64>> {
    let mut lines = answer.lines();
    let header = lines.next().and_then(|l| l.strip_prefix("# ")).context("no `# pxname,…` header")?;
    let columns: Vec<&str> = header.split(',').collect();
    let position = |name: &str| columns.iter().position(|c| *c == name).with_context(|| format!("no {name} column"));
    let (proxy, server, sessions) = (position("pxname")?, position("svname")?, position("scur")?);
    let mut found = HashMap::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split(',').collect();
        let (Some(p), Some(s), Some(n)) = (fields.get(proxy), fields.get(server), fields.get(sessions)) else {
            continue;
        };
        if matches!(*s, "FRONTEND" | "BACKEND") {
            continue;
        }
        found.insert(((*p).to_owned(), (*s).to_owned()), n.parse().unwrap_or(0));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_state_is_read_by_its_header_names() {
        let answer = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n3 opsdeck_web 1 a1 127.0.0.1 2 8 28 1 10 1 0 0 0 0 0 0 - 8081 - 0 0 - - 0\n";
        let servers = parse_servers_state(answer).expect("parses");
        assert_eq!(servers.len(), 1);
        let server = &servers[0];
        assert_eq!(
            (server.backend.as_str(), server.server.as_str(), server.port, server.weight),
            ("opsdeck_web", "a1", 8081, 28)
        );
        assert!(server.draining() && !server.in_maintenance());
    }

    #[test]
    fn current_sessions_skip_frontend_and_backend_rows() {
        let answer = "# pxname,svname,qcur,qmax,scur,smax\nfe,FRONTEND,,,3,4\nopsdeck_web,a1,0,0,2,5\nopsdeck_web,BACKEND,0,0,2,5\n";
        let sessions = parse_current_sessions(answer).expect("parses");
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[&("opsdeck_web".to_owned(), "a1".to_owned())], 2);
    }

    #[test]
    fn a_socket_address_is_tcp_and_anything_else_a_unix_path() {
        assert_eq!("127.0.0.1:9000".parse(), Ok(RuntimeSocket::Tcp("127.0.0.1:9000".parse().expect("addr"))));
        assert_eq!("/run/haproxy/admin.sock".parse(), Ok(RuntimeSocket::Unix("/run/haproxy/admin.sock".into())));
    }
}
