//! The real binary as a child process, with its JSON log lines collected for the test to read.

use serde_json::Value;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Options for the real binary here: both services on port 0, the memory store and the test
/// certificate, then `extra` (a flag given again wins).
pub fn local_args(extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "--service-a-addr=127.0.0.1:0".to_string(),
        "--service-b-addr=127.0.0.1:0".into(),
        "--store=memory".into(),
        format!("--certs-dir={}", super::certs_dir().display()),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

pub struct Process {
    child: Child,
    lines: Receiver<Value>,
    /// Every line seen so far, for assertions over the whole log.
    pub seen: Arc<Mutex<Vec<Value>>>,
    /// Reads stderr until the process closes it; joined on exit, so `seen` then holds every line.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Process {
    pub fn spawn(args: &[String], rust_log: &str) -> Process {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cpe-config"))
            .args(args)
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", rust_log)
            .env_remove("AMQP_URL")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (sender, lines) = std::sync::mpsc::channel();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let keep = seen.clone();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                let value = serde_json::from_str(&line).unwrap_or(Value::String(line));
                keep.lock().unwrap().push(value.clone());
                let _ = sender.send(value);
            }
        });
        Process {
            child,
            lines,
            seen,
            reader: Some(reader),
        }
    }

    /// The `addr` field of the first log line whose message contains `text`.
    pub fn wait_for_addr(&self, text: &str, limit: Duration) -> std::net::SocketAddr {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no log line containing {text:?}"));
            if line["message"].as_str().is_some_and(|m| m.contains(text)) {
                return line["addr"].as_str().unwrap().parse().unwrap();
            }
        }
    }

    /// The child's peak resident memory in KiB (VmHWM), on Linux.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// SIGKILL: no clean stop, no flush, nothing acknowledged.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        self.signal(libc::SIGTERM);
        self.wait()
    }

    /// Sends `signal` without waiting.
    pub fn signal(&self, signal: i32) {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Waits for the process to exit; its exit code (None when a signal killed it).
    pub fn wait(&mut self) -> Option<i32> {
        let code = self.child.wait().ok().and_then(|s| s.code());
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        code
    }

    /// Waits until a log line's message contains `text`; false if none did within `limit`.
    pub fn wait_for_message(&self, text: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line["message"].as_str().is_some_and(|m| m.contains(text)) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    }

    /// Every log message so far.
    pub fn messages(&self) -> Vec<String> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .map(|line| line["message"].as_str().map_or_else(|| line.to_string(), str::to_owned))
            .collect()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill_hard();
    }
}
