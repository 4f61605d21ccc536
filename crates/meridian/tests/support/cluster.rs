//! Real `meridian` processes in a temporary directory, on free ports.
//!
//! A [`Cluster`] is either one `meridian dev` process (nameserver and broker in
//! one) or a `meridian namesrv` plus a `meridian broker`. Every process it
//! starts is killed when the `Cluster` is dropped, also when a test panics, and
//! the data directory is removed. On a panic the tail of every process log is
//! printed, so a failing test shows what the broker said.

use std::fs;
use std::fs::File;
use std::io::BufRead;
use std::io::BufReader;
use std::io::Write;
use std::net::SocketAddr;
use std::net::TcpStream;
use std::path::Path;
use std::path::PathBuf;
use std::process::Child;
use std::process::Command;
use std::process::ExitStatus;
use std::process::Stdio;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;
use std::time::Instant;

use tempfile::TempDir;

pub const MERIDIAN: &str = env!("CARGO_BIN_EXE_meridian");

/// How long a process may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a process may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one `meridian admin` command may run.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Log lines shown per process when a test fails.
const LOG_TAIL_LINES: usize = 60;

const DEV_READY: &str = "meridian dev ready";
const BROKER_READY: &str = "meridian broker ready";

/// Broker settings a test wants on top of the defaults, written to a
/// `broker.conf` with RocketMQ's key names.
#[derive(Clone, Debug, Default)]
pub struct ClusterOpts {
    broker_conf: Vec<(String, String)>,
}

impl ClusterOpts {
    pub fn new() -> Self {
        Self::default()
    }

    /// Any `broker.conf` key, e.g. `("messageDelayLevel", "1s 1s 1s")`.
    pub fn broker_conf(mut self, key: &str, value: &str) -> Self {
        self.broker_conf.push((key.to_owned(), value.to_owned()));
        self
    }

    /// `flushDiskType=SYNC_FLUSH`: a send is answered only once it is on disk.
    pub fn sync_flush(self) -> Self {
        self.broker_conf("flushDiskType", "SYNC_FLUSH")
    }

    /// `autoCreateTopicEnable`.
    pub fn auto_create_topics(self, enabled: bool) -> Self {
        self.broker_conf(
            "autoCreateTopicEnable",
            if enabled { "true" } else { "false" },
        )
    }

    /// `maxMessageSize` in bytes.
    pub fn max_message_size(self, bytes: usize) -> Self {
        self.broker_conf("maxMessageSize", &bytes.to_string())
    }

    fn conf_lines(&self) -> String {
        self.broker_conf
            .iter()
            .map(|(key, value)| format!("{key}={value}\n"))
            .collect()
    }
}

enum Layout {
    /// `meridian dev`: one process serves the nameserver and the broker.
    Dev,
    /// `meridian namesrv` and `meridian broker`.
    Separate,
}

/// A nameserver and one broker (`DefaultCluster`, `broker-a`, id 0) on
/// 127.0.0.1.
pub struct Cluster {
    layout: Layout,
    opts: ClusterOpts,
    dir: TempDir,
    namesrv_port: u16,
    broker_port: u16,
    /// Only in the separate layout.
    namesrv: Option<Process>,
    /// The broker process; in the dev layout the single `meridian dev` process.
    broker: Option<Process>,
    /// Counts process starts, so every start gets its own log files.
    starts: u32,
}

impl Cluster {
    /// `meridian dev --data-dir <tmp> --namesrv-port <p1> --broker-port <p2> [-c <conf>]`,
    /// waiting for its `meridian dev ready` line.
    pub fn dev(opts: ClusterOpts) -> Cluster {
        Self::start(Layout::Dev, opts)
    }

    /// `meridian namesrv -c namesrv.conf` and
    /// `meridian broker -c broker.conf -n 127.0.0.1:<port>`, waiting for the
    /// nameserver to listen and for the broker's `meridian broker ready` line.
    pub fn separate(opts: ClusterOpts) -> Cluster {
        Self::start(Layout::Separate, opts)
    }

    fn start(layout: Layout, opts: ClusterOpts) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("meridian-test-")
            .tempdir()
            .expect("create a temporary directory for the cluster");
        let [namesrv_port, broker_port] = free_ports();
        let mut cluster = Cluster {
            layout,
            opts,
            dir,
            namesrv_port,
            broker_port,
            namesrv: None,
            broker: None,
            starts: 0,
        };
        cluster.start_processes();
        cluster
    }

    /// `127.0.0.1:<nameserver port>`, for a client's name server address.
    pub fn namesrv_addr(&self) -> String {
        format!("127.0.0.1:{}", self.namesrv_port)
    }

    /// `127.0.0.1:<broker port>`.
    pub fn broker_addr(&self) -> String {
        format!("127.0.0.1:{}", self.broker_port)
    }

    /// SIGKILL the broker (in the dev layout, the whole `meridian dev`
    /// process) and wait for it to die. Nothing of it gets to run after this.
    pub fn kill9(&mut self) {
        if let Some(mut broker) = self.broker.take() {
            broker.kill();
        }
    }

    /// Start the broker again on the same data directory and ports. A broker
    /// that is still running is stopped cleanly first; a stopped nameserver
    /// (separate layout) is started again too.
    pub fn restart_broker(&mut self) {
        if let Some(broker) = self.broker.take() {
            broker.terminate();
        }
        self.start_processes();
    }

    /// SIGTERM the broker, then the nameserver, and assert each exits with
    /// status 0.
    pub fn stop(&mut self) {
        if let Some(broker) = self.broker.take() {
            broker.terminate();
        }
        if let Some(namesrv) = self.namesrv.take() {
            namesrv.terminate();
        }
    }

    /// `meridian admin -n <namesrv> <args...>`; returns its stdout and panics
    /// with its stderr when it fails.
    pub fn admin(&self, args: &[&str]) -> String {
        let namesrv = self.namesrv_addr();
        let mut full_args = vec!["admin", "-n", namesrv.as_str()];
        full_args.extend_from_slice(args);
        let output = run_to_completion(self.dir.path(), &full_args, ADMIN_TIMEOUT);
        assert!(
            output.status.success(),
            "`meridian {}` failed with {}\nstdout:\n{}\nstderr:\n{}",
            full_args.join(" "),
            output.status,
            output.stdout,
            output.stderr
        );
        output.stdout
    }

    /// `meridian admin -n <namesrv> <args...>` that may fail: (success,
    /// stdout + stderr).
    #[allow(dead_code)]
    pub fn admin_outcome(&self, args: &[&str]) -> (bool, String) {
        let namesrv = self.namesrv_addr();
        let mut full_args = vec!["admin", "-n", namesrv.as_str()];
        full_args.extend_from_slice(args);
        let output = run_to_completion(self.dir.path(), &full_args, ADMIN_TIMEOUT);
        (
            output.status.success(),
            format!("{}{}", output.stdout, output.stderr),
        )
    }

    /// The broker's store root (`storePathRootDir`): `commitlog/`,
    /// `consumequeue/` and the rest live here.
    pub fn data_dir(&self) -> PathBuf {
        match self.layout {
            Layout::Dev => self.dir.path().join("data"),
            Layout::Separate => self.dir.path().join("store"),
        }
    }

    /// Everything the processes printed so far, stdout and stderr, in the
    /// order the processes were started.
    pub fn logs(&self) -> String {
        self.log_files()
            .iter()
            .map(|log| {
                format!(
                    "---- {} ----\n{}\n",
                    log.file_name().unwrap_or_default().to_string_lossy(),
                    fs::read_to_string(log).unwrap_or_default()
                )
            })
            .collect()
    }

    /// `admin updateTopic -t <topic> -c DefaultCluster -r <queues> -w <queues>`.
    pub fn create_topic(&self, topic: &str, queues: u32) {
        update_topic(|args| self.admin(args), topic, queues);
    }

    fn start_processes(&mut self) {
        match self.layout {
            Layout::Dev => {
                let data_dir = self.data_dir();
                let mut args = vec![
                    "dev".to_owned(),
                    "--data-dir".to_owned(),
                    path_arg(&data_dir),
                    "--namesrv-port".to_owned(),
                    self.namesrv_port.to_string(),
                    "--broker-port".to_owned(),
                    self.broker_port.to_string(),
                ];
                let extra = format!(
                    "diskMaxUsedSpaceRatio={TEST_DISK_RATIO}\n{}",
                    self.opts.conf_lines()
                );
                let conf = self.write_file("broker-extra.conf", &extra);
                args.push("-c".to_owned());
                args.push(path_arg(&conf));
                let process = self.spawn("dev", &args);
                self.broker = Some(process.wait_for_line(DEV_READY));
            }
            Layout::Separate => {
                if self.namesrv.is_none() {
                    let conf = self.write_file(
                        "namesrv.conf",
                        &format!("listenPort={}\n", self.namesrv_port),
                    );
                    let process = self.spawn(
                        "namesrv",
                        &["namesrv".to_owned(), "-c".to_owned(), path_arg(&conf)],
                    );
                    self.namesrv = Some(process.wait_for_port(self.namesrv_port));
                }
                let store = self.data_dir();
                let conf = format!(
                    "brokerClusterName=DefaultCluster\nbrokerName=broker-a\nbrokerId=0\nlistenPort={}\n\
                     storePathRootDir={}\nbrokerIP1=127.0.0.1\nhaListenPort=0\n\
                     diskMaxUsedSpaceRatio={TEST_DISK_RATIO}\n{}",
                    self.broker_port,
                    path_arg(&store),
                    self.opts.conf_lines()
                );
                let conf = self.write_file("broker.conf", &conf);
                let args = [
                    "broker".to_owned(),
                    "-c".to_owned(),
                    path_arg(&conf),
                    "-n".to_owned(),
                    self.namesrv_addr(),
                ];
                let process = self.spawn("broker", &args);
                self.broker = Some(process.wait_for_line(BROKER_READY));
            }
        }
    }

    fn write_file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    fn spawn(&mut self, name: &str, args: &[String]) -> Process {
        self.starts += 1;
        Process::spawn(&format!("{:02}-{name}", self.starts), self.dir.path(), args)
    }

    fn log_files(&self) -> Vec<PathBuf> {
        let mut logs: Vec<PathBuf> = fs::read_dir(self.dir.path())
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|entry| entry.path())
                    .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
                    .collect()
            })
            .unwrap_or_default();
        logs.sort();
        logs
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if thread::panicking() {
            for log in self.log_files() {
                eprintln!(
                    "---- last lines of {} ----\n{}",
                    log.display(),
                    tail(&log, LOG_TAIL_LINES)
                );
            }
        }
        // Kill the processes here: the fields would drop in declaration order,
        // removing `dir` while they still run in it.
        if let Some(mut broker) = self.broker.take() {
            broker.kill();
        }
        if let Some(mut namesrv) = self.namesrv.take() {
            namesrv.kill();
        }
    }
}

/// One child process; its stdout is copied line by line to `<name>.stdout.log`
/// by a thread that also reports the ready line, its stderr goes straight to
/// `<name>.stderr.log`. Killed when dropped.
pub struct Process {
    name: String,
    child: Child,
    ready_lines: mpsc::Receiver<String>,
    stderr_log: PathBuf,
}

impl Process {
    /// `meridian <args>` in `dir`, its output logged to `dir/<name>.*.log`.
    pub fn spawn(name: &str, dir: &Path, args: &[String]) -> Process {
        let stdout_log = dir.join(format!("{name}.stdout.log"));
        let stderr_log = dir.join(format!("{name}.stderr.log"));
        let stderr = File::create(&stderr_log).expect("create stderr log");
        let mut child = Command::new(MERIDIAN)
            .args(args)
            .current_dir(dir)
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn `{MERIDIAN} {}`: {e}", args.join(" ")));
        let stdout = child.stdout.take().expect("child stdout is piped");
        let (lines_tx, ready_lines) = mpsc::channel();
        thread::spawn(move || {
            // Keep draining stdout until the process exits, or it would block
            // on a full pipe.
            let mut log = File::create(&stdout_log).ok();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(log) = log.as_mut() {
                    let _ = writeln!(log, "{line}");
                }
                let _ = lines_tx.send(line);
            }
        });
        Process {
            name: name.to_owned(),
            child,
            ready_lines,
            stderr_log,
        }
    }

    /// Wait until stdout has a line containing `marker`.
    pub fn wait_for_line(mut self, marker: &str) -> Process {
        self.wait_for_line_text(marker);
        self
    }

    /// Wait until stdout has a line containing `marker`, and return that
    /// line (for a process that prints what it bound).
    pub fn wait_for_line_text(&mut self, marker: &str) -> String {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match self.ready_lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) if line.contains(marker) => return line,
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // stdout closed: the process is exiting; report how.
                    let status = self.child.wait().ok();
                    self.fail(&format!("exited ({status:?}) before printing `{marker}`"));
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.fail(&format!("exited ({status}) before printing `{marker}`"));
            }
            if Instant::now() >= deadline {
                self.fail(&format!(
                    "did not print `{marker}` within {READY_TIMEOUT:?}"
                ));
            }
        }
    }

    /// Wait until something accepts connections on 127.0.0.1:`port`.
    fn wait_for_port(mut self, port: u16) -> Process {
        let deadline = Instant::now() + READY_TIMEOUT;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return self;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.fail(&format!(
                    "exited ({status}) before listening on port {port}"
                ));
            }
            if Instant::now() >= deadline {
                self.fail(&format!(
                    "did not listen on port {port} within {READY_TIMEOUT:?}"
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last `lines` lines the process wrote to stderr.
    pub fn stderr_tail(&self, lines: usize) -> String {
        tail(&self.stderr_log, lines)
    }

    fn fail(&mut self, what: &str) -> ! {
        self.kill();
        panic!(
            "meridian process `{}` {what}\nstderr:\n{}",
            self.name,
            tail(&self.stderr_log, LOG_TAIL_LINES)
        );
    }

    /// SIGTERM, then wait for exit status 0.
    fn terminate(mut self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(
            sent.as_ref().is_ok_and(ExitStatus::success),
            "could not send SIGTERM to `{}` (pid {pid}): {sent:?}",
            self.name
        );
        let deadline = Instant::now() + STOP_TIMEOUT;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                Ok(None) => self.fail(&format!("did not exit within {STOP_TIMEOUT:?} of SIGTERM")),
                Err(e) => self.fail(&format!("could not be waited for: {e}")),
            }
        };
        if !status.success() {
            self.fail(&format!(
                "exited with {status} after SIGTERM, expected status 0"
            ));
        }
    }

    /// SIGKILL the process and reap it.
    pub fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

struct AdminOutput {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Run `meridian <args>` to completion with a time limit.
fn run_to_completion(dir: &Path, args: &[&str], timeout: Duration) -> AdminOutput {
    let run_dir = tempfile::Builder::new()
        .prefix("admin-")
        .tempdir_in(dir)
        .expect("create a directory for the admin command's output");
    let stdout_path = run_dir.path().join("stdout");
    let stderr_path = run_dir.path().join("stderr");
    let mut child = Command::new(MERIDIAN)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(File::create(&stdout_path).expect("create admin stdout"))
        .stderr(File::create(&stderr_path).expect("create admin stderr"))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn `meridian {}`: {e}", args.join(" ")));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "`meridian {}` did not finish within {timeout:?}\nstderr:\n{}",
                    args.join(" "),
                    fs::read_to_string(&stderr_path).unwrap_or_default()
                );
            }
        }
    };
    AdminOutput {
        status,
        stdout: fs::read_to_string(&stdout_path).unwrap_or_default(),
        stderr: fs::read_to_string(&stderr_path).unwrap_or_default(),
    }
}

/// Two distinct free TCP ports on 127.0.0.1 (see [`super::ports`]).
fn free_ports() -> [u16; 2] {
    [super::free_port(), super::free_port()]
}

fn path_arg(path: &Path) -> String {
    path.to_str().expect("temporary paths are UTF-8").to_owned()
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Commit-log segment size of every group test broker (unless its extra
/// lines say otherwise): a run with many brokers fits a few GB of disk.
const TEST_SEGMENT_SIZE: u64 = 64 * 1024 * 1024;

/// `diskMaxUsedSpaceRatio` of every test broker. Tests share the disk with
/// whatever else the machine runs; past the default 75 % a broker starts
/// deleting its oldest segments, and a test's messages would go with them.
pub const TEST_DISK_RATIO: u32 = 95;

/// A name server and the brokers of one group (`broker-a`), each broker a
/// process of its own with its own `broker.conf`: a master and slaves, or
/// the members of a Raft group.
pub struct BrokerGroup {
    dir: TempDir,
    namesrv_port: u16,
    namesrv: Option<Process>,
    members: Vec<Member>,
    starts: u32,
}

struct Member {
    port: u16,
    conf: PathBuf,
    process: Option<Process>,
}

impl BrokerGroup {
    /// A name server, then one broker per entry of `confs` (extra
    /// `broker.conf` lines; the group's common keys, ports and store path
    /// are added here). Broker `i` gets its own store under the temp dir.
    pub fn start(confs: &[&str]) -> BrokerGroup {
        BrokerGroup::start_with_namesrv("", confs)
    }

    /// [`BrokerGroup::start`], with `namesrv_extra` lines in namesrv.conf.
    pub fn start_with_namesrv(namesrv_extra: &str, confs: &[&str]) -> BrokerGroup {
        let [namesrv_port, _] = free_ports();
        BrokerGroup::start_with_namesrv_port(namesrv_port, namesrv_extra, confs)
    }

    /// [`BrokerGroup::start_with_namesrv`], the name server on
    /// `namesrv_port` (known before it starts, as other regions' name
    /// servers list it). `@DIR@` in `namesrv_extra` is the group's
    /// temporary directory.
    pub fn start_with_namesrv_port(
        namesrv_port: u16,
        namesrv_extra: &str,
        confs: &[&str],
    ) -> BrokerGroup {
        let dir = tempfile::Builder::new()
            .prefix("meridian-group-")
            .tempdir()
            .expect("temp dir");
        let namesrv_extra = namesrv_extra.replace("@DIR@", &path_arg(dir.path()));
        let namesrv_extra = namesrv_extra.as_str();
        let mut group = BrokerGroup {
            dir,
            namesrv_port,
            namesrv: None,
            members: Vec::new(),
            starts: 0,
        };
        let conf = group.write(
            "namesrv.conf",
            &format!("listenPort={namesrv_port}\n{namesrv_extra}\n"),
        );
        let _ = conf;
        group.start_namesrv();
        for (i, extra) in confs.iter().enumerate() {
            let [port, ha_port] = free_ports();
            let store = group.dir.path().join(format!("store-{i}"));
            let text = format!(
                "brokerClusterName=DefaultCluster\nbrokerName=broker-a\nlistenPort={port}\n\
                 haListenPort={ha_port}\nstorePathRootDir={}\nbrokerIP1=127.0.0.1\n\
                 namesrvAddr=127.0.0.1:{namesrv_port}\n\
                 mappedFileSizeCommitLog={TEST_SEGMENT_SIZE}\n\
                 diskMaxUsedSpaceRatio={TEST_DISK_RATIO}\n{extra}\n",
                path_arg(&store)
            );
            let conf = group.write(&format!("broker-{i}.conf"), &text);
            group.members.push(Member {
                port,
                conf,
                process: None,
            });
            group.start_broker(i);
        }
        group
    }

    pub fn namesrv_addr(&self) -> String {
        format!("127.0.0.1:{}", self.namesrv_port)
    }

    /// Start the name server (again) with its `namesrv.conf`.
    pub fn start_namesrv(&mut self) {
        let conf = path_arg(&self.dir.path().join("namesrv.conf"));
        let ns = self.spawn("namesrv", &["namesrv".into(), "-c".into(), conf]);
        self.namesrv = Some(ns.wait_for_port(self.namesrv_port));
    }

    /// SIGKILL the name server.
    pub fn kill9_namesrv(&mut self) {
        if let Some(mut p) = self.namesrv.take() {
            p.kill();
        }
    }

    pub fn broker_addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.members[i].port)
    }

    /// Start broker `i` (again) and wait for its ready line.
    pub fn start_broker(&mut self, i: usize) {
        let conf = path_arg(&self.members[i].conf);
        let p = self.spawn(
            &format!("broker-{i}"),
            &["broker".into(), "-c".into(), conf],
        );
        self.members[i].process = Some(p.wait_for_line(BROKER_READY));
    }

    /// SIGKILL broker `i`.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut p) = self.members[i].process.take() {
            p.kill();
        }
    }

    /// SIGTERM broker `i` and expect exit status 0.
    pub fn stop_broker(&mut self, i: usize) {
        if let Some(p) = self.members[i].process.take() {
            p.terminate();
        }
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.members[i].process.is_some()
    }

    /// Broker `i`'s `storePathRootDir`.
    pub fn store_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("store-{i}"))
    }

    /// How many brokers the group has (running or not).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// `admin updateTopic -t <topic> -c DefaultCluster -r <queues> -w <queues>`.
    pub fn create_topic(&self, topic: &str, queues: u32) {
        update_topic(|args| self.admin(args), topic, queues);
    }

    /// Run `meridian admin -n <namesrv> <args>`; panics with stderr on failure.
    pub fn admin(&self, args: &[&str]) -> String {
        let output = Command::new(MERIDIAN)
            .arg("admin")
            .arg("-n")
            .arg(self.namesrv_addr())
            .args(args)
            .output()
            .expect("run meridian admin");
        assert!(
            output.status.success(),
            "`meridian admin {}` failed\nstdout:\n{}\nstderr:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Everything the processes printed so far.
    pub fn logs(&self) -> String {
        let mut logs: Vec<PathBuf> = fs::read_dir(self.dir.path())
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|ext| ext == "log"))
                    .collect()
            })
            .unwrap_or_default();
        logs.sort();
        logs.iter()
            .map(|log| {
                format!(
                    "---- {} ----\n{}\n",
                    log.file_name().unwrap_or_default().to_string_lossy(),
                    fs::read_to_string(log).unwrap_or_default()
                )
            })
            .collect()
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    fn spawn(&mut self, name: &str, args: &[String]) -> Process {
        self.starts += 1;
        Process::spawn(&format!("{:02}-{name}", self.starts), self.dir.path(), args)
    }
}

impl Drop for BrokerGroup {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("{}", self.logs());
        }
        for m in &mut self.members {
            if let Some(mut p) = m.process.take() {
                p.kill();
            }
        }
        if let Some(mut ns) = self.namesrv.take() {
            ns.kill();
        }
    }
}

/// `updateTopic` with `queues` read and write queues in DefaultCluster,
/// through `admin` (a cluster's or a group's `meridian admin`).
fn update_topic(admin: impl Fn(&[&str]) -> String, topic: &str, queues: u32) {
    let queues = queues.to_string();
    admin(&[
        "updateTopic",
        "-t",
        topic,
        "-c",
        "DefaultCluster",
        "-r",
        &queues,
        "-w",
        &queues,
    ]);
}
