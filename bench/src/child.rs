//! The server as a child process of the bench (the `cpe-config` binary next to this one): for
//! phases whose connections or memory must not share the bench's process (descriptors, RSS).

use crate::harness::Bench;
use anyhow::{anyhow, Context, Result};
use serde_json::Value;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `cpe-config` built with this bench (same profile), the default server of P6 and P7.
pub fn sibling_binary() -> Result<PathBuf, String> {
    let here = std::env::current_exe().map_err(|e| e.to_string())?;
    let binary = here.with_file_name("cpe-config");
    if binary.exists() {
        Ok(binary)
    } else {
        Err(format!(
            "{} not found: build it first (cargo build --release), or pass --binary",
            binary.display()
        ))
    }
}

/// The server child process, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Server {
    child: Child,
    pub port: u16,
}

impl Server {
    pub fn start(bench: &Bench, binary: &PathBuf, args: &[String], service: &str) -> Result<Server> {
        let mut child = Command::new(binary)
            .args(args)
            .arg("--service-a-addr=127.0.0.1:0")
            .arg("--service-b-addr=127.0.0.1:0")
            .arg(format!("--certs-dir={}", bench.certs.display()))
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "warn,cpe_config::startup=info")
            .env_remove("AMQP_URL")
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut lines = std::io::BufReader::new(stderr).lines();
        let wanted = format!("{service} (");
        let port = loop {
            let Some(Ok(line)) = lines.next() else {
                let _ = child.kill();
                return Err(anyhow!("the server exited before {service} listened"));
            };
            let json: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            if json["message"].as_str().is_some_and(|m| m.starts_with(&wanted)) {
                let addr: std::net::SocketAddr = json["addr"].as_str().unwrap_or("").parse()?;
                break addr.port();
            }
        };
        // Keep reading, so the child never blocks on a full pipe; echo its warnings.
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                println!("  server: {line}");
            }
        });
        Ok(Server { child, port })
    }

    /// The child's process id, to read its memory and CPU time from /proc.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: the process dies at once, as a crashed machine's would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub async fn stop(&mut self) {
        // SAFETY: signals our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
