//! A `meridian netproxy` process in front of some address, to cut, reset and
//! delay one link from a test (there is no netem on the test machines).
//!
//! The proxy listens and takes control commands on free ports on 127.0.0.1;
//! [`NetProxy::addr`] is what the test connects to (or puts in a config)
//! instead of the target. The process is killed when the `NetProxy` is
//! dropped, also when a test panics, and then its log is printed.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::cluster::Process;

/// How long a control command may take to be answered.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`NetProxy::wait_for_connections`] waits.
const COUNT_TIMEOUT: Duration = Duration::from_secs(30);
/// Log lines shown when a test fails.
const LOG_TAIL_LINES: usize = 60;

/// One `meridian netproxy --listen 127.0.0.1:0 --target <target>
/// --control 127.0.0.1:0` process.
pub struct NetProxy {
    // Declared before `dir`: killed before its directory is removed.
    process: Process,
    dir: TempDir,
    addr: String,
    control_addr: String,
}

impl NetProxy {
    /// Start a proxy to `target` (`host:port`) with a one-way delay of
    /// `delay_ms` per direction, and wait for the addresses it bound.
    pub fn start(target: &str, delay_ms: u64) -> NetProxy {
        NetProxy::start_on("127.0.0.1:0", target, delay_ms)
    }

    /// [`NetProxy::start`], listening on `listen` (`ip:port`).
    pub fn start_on(listen: &str, target: &str, delay_ms: u64) -> NetProxy {
        let dir = tempfile::Builder::new()
            .prefix("meridian-netproxy-")
            .tempdir()
            .expect("create a temporary directory for the proxy");
        let args: Vec<String> = [
            "netproxy",
            "--listen",
            listen,
            "--target",
            target,
            "--delay-ms",
            &delay_ms.to_string(),
            "--control",
            "127.0.0.1:0",
        ]
        .iter()
        .map(|arg| arg.to_string())
        .collect();
        let mut process = Process::spawn("netproxy", dir.path(), &args);
        // `listening <addr> control <control-addr>`
        let line = process.wait_for_line_text("listening ");
        let words: Vec<&str> = line.split_whitespace().collect();
        let [_, addr, _, control_addr] = words[..] else {
            panic!("unexpected first line from `meridian netproxy`: {line:?}");
        };
        NetProxy {
            addr: addr.to_owned(),
            control_addr: control_addr.to_owned(),
            process,
            dir,
        }
    }

    /// Where to connect instead of the target, `127.0.0.1:<port>`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Send one control command (`blackhole`, `heal`, `reset`,
    /// `delay <ms>`, `status`) on a connection of its own; the answer line
    /// without its newline.
    pub fn command(&self, command: &str) -> String {
        let fail = |e: std::io::Error| -> ! {
            panic!("netproxy control `{command}` at {}: {e}", self.control_addr)
        };
        let mut stream = TcpStream::connect(&self.control_addr).unwrap_or_else(|e| fail(e));
        stream
            .set_read_timeout(Some(CONTROL_TIMEOUT))
            .unwrap_or_else(|e| fail(e));
        stream
            .write_all(format!("{command}\n").as_bytes())
            .unwrap_or_else(|e| fail(e));
        let mut answer = String::new();
        BufReader::new(stream)
            .read_line(&mut answer)
            .unwrap_or_else(|e| fail(e));
        answer.trim_end().to_owned()
    }

    /// A command that must be answered `ok`.
    pub fn command_ok(&self, command: &str) {
        let answer = self.command(command);
        assert_eq!(answer, "ok", "netproxy control `{command}`");
    }

    /// Stop delivering anything, in both directions, until [`NetProxy::heal`].
    pub fn blackhole(&self) {
        self.command_ok("blackhole");
    }

    /// Forward new connections again; blackholed ones are closed.
    pub fn heal(&self) {
        self.command_ok("heal");
    }

    /// Close every connection through the proxy.
    pub fn reset(&self) {
        self.command_ok("reset");
    }

    /// The one-way delay, per direction, for bytes read from now on.
    pub fn set_delay(&self, delay_ms: u64) {
        self.command_ok(&format!("delay {delay_ms}"));
    }

    /// How many connections the proxy holds open, from `status`.
    pub fn connections(&self) -> usize {
        let status = self.command("status");
        status
            .split_whitespace()
            .find_map(|word| word.strip_prefix("connections="))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected netproxy status: {status:?}"))
    }

    /// Wait until the proxy holds exactly `n` connections (it counts a
    /// connection once it has accepted it, and stops once it has closed it).
    pub fn wait_for_connections(&self, n: usize) {
        let deadline = Instant::now() + COUNT_TIMEOUT;
        loop {
            let now = self.connections();
            if now == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "netproxy holds {now} connections, not {n}, after {COUNT_TIMEOUT:?}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NetProxy {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "---- last lines of the netproxy's stderr ({}) ----\n{}",
                self.dir.path().display(),
                self.process.stderr_tail(LOG_TAIL_LINES)
            );
        }
    }
}
