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
use std::time::{Duration, Instant};
use stockd_server::client::Connection;

const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a command, or a server told to stop, may run before a test
/// kills it and fails.
const EXIT_TIMEOUT: Duration = Duration::from_secs(120);

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
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            match self.log.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
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

    /// SIGTERM, then waits (bounded) for the process to exit.
    pub fn terminate(self) -> ExitStatus {
        signal(self.child.id(), "-TERM");
        self.wait()
    }

    /// SIGKILL, then waits.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }

    /// Waits for the process to exit; kills it and fails after `EXIT_TIMEOUT`.
    pub fn wait(mut self) -> ExitStatus {
        let watchdog = Watchdog::start(self.child.id(), EXIT_TIMEOUT);
        let status = self.child.wait().expect("the server exits");
        assert!(!watchdog.finish(), "the server still ran after {EXIT_TIMEOUT:?}");
        status
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `Command::output`, bounded: the command is killed and the test fails
/// after `EXIT_TIMEOUT`.
pub fn output(command: &mut Command) -> Output {
    output_within(command, EXIT_TIMEOUT)
}

/// Runs `command` to its end, or kills it after `limit` and fails: a test
/// of a start that must be refused fails instead of hanging when the
/// server serves after all.
pub fn output_within(command: &mut Command, limit: Duration) -> Output {
    let child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("the command starts");
    let watchdog = Watchdog::start(child.id(), limit);
    let output = child.wait_with_output().expect("the command ends");
    assert!(!watchdog.finish(), "{command:?} still ran after {limit:?}");
    output
}

/// SIGKILLs a process unless told, within a limit, that it has ended.
struct Watchdog {
    finished: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<bool>,
}

impl Watchdog {
    fn start(pid: u32, limit: Duration) -> Watchdog {
        let (finished, done) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let timed_out = matches!(done.recv_timeout(limit), Err(mpsc::RecvTimeoutError::Timeout));
            if timed_out {
                signal(pid, "-KILL");
            }
            timed_out
        });
        Watchdog { finished, thread }
    }

    /// Whether it had to kill the process.
    fn finish(self) -> bool {
        let _ = self.finished.send(());
        self.thread.join().unwrap()
    }
}

pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill").arg(signal).arg(pid.to_string()).status().expect("kill(1) runs");
    assert!(status.success(), "kill {signal} {pid}");
}
