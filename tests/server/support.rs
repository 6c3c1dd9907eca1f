//! Starting the real `stockd` binary for integration tests: on 127.0.0.1
//! with an OS-assigned port and a temporary data directory. The address is
//! read from the log line that says `listening on`, readiness from the line
//! that says `ready`: no sleeps, no fixed ports.

#![allow(dead_code)] // each test file uses part of this module

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use stockd_server::client::Connection;

const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

pub fn stockd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stockd"))
}

pub struct Server {
    child: Child,
    pub address: SocketAddr,
    pub data_dir: PathBuf,
    log: mpsc::Receiver<String>,
}

impl Server {
    /// Starts `stockd serve` on `data_dir` with `args`, and waits until it is ready.
    pub fn start(data_dir: &Path, args: &[&str]) -> Server {
        let mut server = Server::spawn(data_dir, args);
        server.wait_for_log("ready");
        server
    }

    /// Starts the server and returns once it listens (it may still be recovering).
    pub fn spawn(data_dir: &Path, args: &[&str]) -> Server {
        Server::spawn_logging(data_dir, args, "info")
    }

    /// `spawn`, with `STOCKD_LOG` set to `filter`.
    pub fn spawn_logging(data_dir: &Path, args: &[&str], filter: &str) -> Server {
        let mut child = stockd()
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(args)
            .env("STOCKD_LOG", filter)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the stockd binary starts");
        let stderr = child.stderr.take().expect("piped");
        let (lines_tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("  [stockd] {line}");
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server =
            Server { child, address: SocketAddr::from(([127, 0, 0, 1], 0)), data_dir: data_dir.to_path_buf(), log };
        let line = server.wait_for_log("listening on");
        let address = line.rsplit("://").next().expect("an address after the scheme");
        server.address = address.trim().parse().unwrap_or_else(|_| panic!("an address in {line:?}"));
        server
    }

    /// Waits (bounded) for a log line containing `needle` and returns it.
    pub fn wait_for_log(&mut self, needle: &str) -> String {
        loop {
            match self.log.recv_timeout(STARTUP_TIMEOUT) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(error) => {
                    let status = self.child.try_wait();
                    panic!("no log line with {needle:?} ({error}); the server: {status:?}");
                }
            }
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub async fn connect(&self, token: Option<&str>) -> Connection {
        Connection::open(self.address, token).await.expect("connects")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then waits for the process to exit.
    pub fn terminate(mut self) -> ExitStatus {
        signal(self.child.id(), "-TERM");
        self.child.wait().expect("the server exits")
    }

    /// SIGKILL, then waits.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }

    pub fn wait(mut self) -> ExitStatus {
        self.child.wait().expect("the server exits")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `command` to its end, or kills it after `limit` and fails: a test
/// of a start that must be refused fails instead of hanging when the
/// server serves after all.
pub fn output_within(command: &mut Command, limit: Duration) -> Output {
    let child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("the command starts");
    let pid = child.id();
    let (finished, done) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        let timed_out = matches!(done.recv_timeout(limit), Err(mpsc::RecvTimeoutError::Timeout));
        if timed_out {
            signal(pid, "-KILL");
        }
        timed_out
    });
    let output = child.wait_with_output().expect("the command ends");
    let _ = finished.send(());
    assert!(!watchdog.join().unwrap(), "{command:?} still ran after {limit:?}");
    output
}

pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill").arg(signal).arg(pid.to_string()).status().expect("kill(1) runs");
    assert!(status.success(), "kill {signal} {pid}");
}
