//! `meridian` — the one binary: `dev` (name server and broker in one
//! process), `namesrv`, `broker`, `relay` (between regions), `admin`
//! (mqadmin's commands), and `bench`
//! (load and measurement, in the `meridian-bench` crate).
//!
//! - [`servers`] — starting and stopping the servers, signals.
//! - [`admin`] — the admin commands and their tables.
//! - [`netproxy`] — a TCP forwarder for tests (hidden `netproxy` subcommand).

mod admin;
mod netproxy;
mod servers;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// mimalloc rather than the system allocator: a send allocates and frees
/// a few dozen small buffers on whichever runtime thread runs it, and
/// glibc's allocator took about a tenth of a busy Raft leader's CPU on that
/// (allocation, free, consolidation, arena locks); see docs/benchmarks.md,
/// "What bounds each figure".
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "meridian",
    version,
    about = "Meridian: a RocketMQ-compatible message queue"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Name server and broker in one process, for development.
    Dev {
        /// Where the broker keeps its data.
        #[arg(long, default_value = "./meridian-data")]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 9876)]
        namesrv_port: u16,
        #[arg(long, default_value_t = 10911)]
        broker_port: u16,
        /// Extra broker.conf keys (override the dev defaults).
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
    },
    /// A name server.
    Namesrv {
        /// namesrv.conf (`listenPort`, default 9876).
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
    },
    /// A broker.
    Broker {
        /// broker.conf, with RocketMQ's keys.
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
        /// Name server addresses, `;`-separated (overrides `namesrvAddr`).
        #[arg(short = 'n', long = "namesrvAddr")]
        namesrv_addr: Option<String>,
    },
    /// A relay between two regions' clusters (`relay.conf`: srcClusterAddr,
    /// destClusterAddr, replicationGroup, topics, maxTps).
    Relay {
        #[arg(short = 'c', long = "config")]
        config: PathBuf,
    },
    /// Administration, with mqadmin's command names and flags.
    Admin(admin::AdminArgs),
    /// Benchmark any RocketMQ-compatible broker: produce, consume, e2e.
    Bench(meridian_bench::BenchArgs),
    /// TCP forwarder for tests: cut, reset and delay links (dev only).
    #[command(hide = true)]
    Netproxy(netproxy::NetproxyArgs),
}

fn main() {
    let cli = Cli::parse();
    let quiet = matches!(cli.command, Command::Admin(_) | Command::Bench(_));
    init_logging(quiet);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Dev {
                data_dir,
                namesrv_port,
                broker_port,
                config,
            } => servers::dev(data_dir, namesrv_port, broker_port, config).await,
            Command::Namesrv { config } => servers::namesrv(config).await,
            Command::Broker {
                config,
                namesrv_addr,
            } => servers::broker(config, namesrv_addr).await,
            Command::Relay { config } => servers::relay(config).await,
            Command::Admin(args) => admin::run(args).await,
            Command::Bench(args) => meridian_bench::run(args).await,
            Command::Netproxy(args) => netproxy::run(args).await,
        }
    });
    // Background tasks (connections, timers) must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    if let Err(e) = result {
        eprintln!("meridian: {e:#}");
        std::process::exit(1);
    }
}

fn init_logging(quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if quiet { "warn" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
