//! Shared helpers for the binary's tests: run `mxfleet` as a child process with its
//! output lines on channels, free ports, and a one-shot SMTP exchange.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

pub fn mxfleet() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mxfleet"))
}

/// A running `mxfleet` with its output lines arriving on channels.
pub struct Running {
    pub child: Child,
    pub stdout: Receiver<String>,
    pub stderr: Receiver<String>,
}

impl Running {
    pub fn start(command: &mut Command) -> Running {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("RUST_LOG", "info")
            .spawn()
            .expect("mxfleet starts");
        let stdout = lines(child.stdout.take().expect("piped"));
        let stderr = lines(child.stderr.take().expect("piped"));
        Running {
            child,
            stdout,
            stderr,
        }
    }

    /// Waits until a line containing `needle` arrives on `which`; returns every line
    /// seen until then.
    pub fn wait_for_line(
        &self,
        which: &Receiver<String>,
        needle: &str,
        deadline: Duration,
    ) -> Vec<String> {
        let until = Instant::now() + deadline;
        let mut seen = Vec::new();
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match which.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    seen.push(line);
                    if found {
                        return seen;
                    }
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "no line with {needle:?} within {deadline:?}; saw:\n{}",
                        seen.join("\n")
                    )
                }
            }
        }
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    pub fn wait_exit(&mut self, deadline: Duration) -> i32 {
        let until = Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait works") {
                return status.code().expect("exited, not killed by a signal");
            }
            if Instant::now() >= until {
                let _ = self.child.kill();
                panic!("mxfleet did not exit within {deadline:?}");
            }
            // Polling a child process: a short pause between checks, not a wait for an event.
            std::thread::park_timeout(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    /// A failing test must not leave a daemon behind.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn lines(source: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(source).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// The `cluster.initial_members` entries of a test fleet on loopback: node `n` (from 1)
/// listens on `peers[n - 1]` and lives in site `site-n`.
pub fn initial_members(peers: &[u16]) -> String {
    peers
        .iter()
        .enumerate()
        .map(|(i, port)| {
            let n = i + 1;
            format!(r#"{{ id = {n}, addr = "127.0.0.1:{port}", site = "site-{n}" }}"#)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A loopback port that refuses connections and that no other test can take: the
/// socket is bound (without `SO_REUSEADDR`) but never listens, so a connect gets a
/// reset at once. Stands in for a primary that is down; drop it to let a server bind.
pub struct DownPort {
    socket: tokio::net::TcpSocket,
}

impl DownPort {
    pub fn reserve() -> DownPort {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.1:0".parse().unwrap())
            .expect("bind a loopback port");
        DownPort { socket }
    }

    pub fn port(&self) -> u16 {
        self.socket.local_addr().expect("addr").port()
    }
}

/// One SMTP exchange over a plain socket: returns the server's replies.
pub fn smtp_exchange(port: u16, recipient: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("smtp connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let script = format!(
        "EHLO cli.test\r\nMAIL FROM:<s@client.example>\r\nRCPT TO:<{recipient}>\r\nDATA\r\nSubject: cli\r\n\r\nhello\r\n.\r\nQUIT\r\n"
    );
    stream.write_all(script.as_bytes()).unwrap();
    let mut replies = String::new();
    stream.read_to_string(&mut replies).unwrap();
    replies
}

/// `[raft]` timers for a test fleet on loopback: elections within a second.
pub const FAST_RAFT: &str = "heartbeat_interval = \"50ms\"\nelection_timeout = \"400ms\"\n";

/// How every test node's config begins: its identity, a plaintext peer listener and
/// its SMTP listener on loopback, the fleet's members and, if given, `[raft]` keys.
/// Tests append their own tables; the text ends inside `[smtp]`, so more `[smtp]`
/// keys may follow directly.
pub struct ConfigHead<'a> {
    pub id: u64,
    pub site: &'a str,
    pub data_dir: &'a std::path::Path,
    pub peer_port: u16,
    /// `cluster.initial_members` entries, e.g. from [`initial_members`].
    pub members: String,
    /// The body of `[raft]` (e.g. [`FAST_RAFT`]); empty for the defaults.
    pub raft: &'a str,
    pub smtp_port: u16,
    pub hostname: &'a str,
}

impl ConfigHead<'_> {
    /// Node 1, alone in site `dev`, with the default Raft timers.
    pub fn single_node<'a>(
        data_dir: &'a std::path::Path,
        peer_port: u16,
        smtp_port: u16,
        hostname: &'a str,
    ) -> ConfigHead<'a> {
        ConfigHead {
            id: 1,
            site: "dev",
            data_dir,
            peer_port,
            members: ConfigHead::single_member(peer_port, "dev"),
            raft: "",
            smtp_port,
            hostname,
        }
    }

    /// The members entry of a one-node fleet: node 1 at `peer_port` in site `site`.
    pub fn single_member(peer_port: u16, site: &str) -> String {
        format!(r#"{{ id = 1, addr = "127.0.0.1:{peer_port}", site = "{site}" }}"#)
    }

    pub fn render(&self) -> String {
        let raft = if self.raft.is_empty() {
            String::new()
        } else {
            format!("[raft]\n{}\n", self.raft)
        };
        format!(
            r#"
[node]
id = {id}
site = "{site}"
data_dir = "{data}"

[peer]
listen = "127.0.0.1:{peer}"
plaintext = true

[cluster]
initial_members = [ {members} ]

{raft}[smtp]
listen = "127.0.0.1:{smtp}"
hostname = "{hostname}"
"#,
            id = self.id,
            site = self.site,
            data = self.data_dir.display(),
            peer = self.peer_port,
            members = self.members,
            smtp = self.smtp_port,
            hostname = self.hostname,
        )
    }
}
