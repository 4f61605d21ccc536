//! TCP ports for the processes a test starts.
//!
//! A port found by binding port 0 and letting go of it can be taken by
//! anyone before our process binds it: another test process doing the same,
//! or any outgoing connection, since the kernel hands out both from its
//! ephemeral range. So ports come from below that range, where the kernel
//! never picks one by itself, and each is claimed with a lock file
//! (`flock`, released by the kernel when the test process exits, however
//! it exits), which every other test process respects.

use std::fs::{File, OpenOptions};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Mutex;

/// The lowest port handed out.
const FIRST: u16 = 20_000;

/// Lock files of the ports this process holds: kept open until it exits.
static HELD: Mutex<Vec<File>> = Mutex::new(Vec::new());

/// A port on 127.0.0.1 that nothing listens on now and that no other test
/// process will be given while this one runs.
pub fn free_port() -> u16 {
    let end = ephemeral_start().unwrap_or(32_768).max(FIRST + 1_000);
    let span = (end - FIRST) as u64;
    let dir = lock_dir();
    std::fs::create_dir_all(&dir).expect("create the port lock directory");
    // Start somewhere different in every process, so processes rarely
    // contend for the same locks.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    let seed = (std::process::id() as u64).wrapping_mul(7_919) ^ nanos;
    for i in 0..span {
        let port = FIRST + ((seed + i) % span) as u16;
        let Ok(file) = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(format!("{port}.lock")))
        else {
            continue;
        };
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue; // taken by something that is not a test: skip it
        }
        HELD.lock().unwrap_or_else(|e| e.into_inner()).push(file);
        return port;
    }
    panic!("no free port in {FIRST}..{end}");
}

fn lock_dir() -> PathBuf {
    std::env::temp_dir().join("meridian-test-ports")
}

/// The first port of the kernel's ephemeral range.
fn ephemeral_start() -> Option<u16> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    text.split_whitespace().next()?.parse().ok()
}
