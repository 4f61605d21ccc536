//! The command line. Short flags are those of RocketMQ's own benchmark tool
//! (`org.apache.rocketmq.example.benchmark.Producer` / `Consumer`): `-n`
//! name server, `-t` topic, `-w` producer tasks, `-s` message size, `-q`
//! message quantity, `-g` consumer group. The rest are Meridian's.

use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

/// `meridian bench`: drive any RocketMQ-compatible broker over the remoting
/// protocol and measure it.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Threads of the tool's own async runtime; 0 means one per CPU. One
    /// thread keeps the tasks and every connection's reading and writing on
    /// one core, with no hand-off between threads in a request's round trip
    /// (best with one request in flight); more let the tool use more cores
    /// when it is the bottleneck.
    #[arg(long, global = true, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=256))]
    pub client_threads: u32,
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(Subcommand, Debug, Clone)]
pub enum BenchCommand {
    /// Send messages and report throughput and send latency.
    Produce(ProduceArgs),
    /// Pull every queue of a topic and report throughput.
    Consume(ConsumeArgs),
    /// Produce and consume at once; latency runs from the send to the
    /// consumer's receipt (a timestamp travels in each body).
    E2e(E2eArgs),
    /// Read back the copies of other regions' queues that a topic holds in
    /// one region and report how long after its origin each was stored.
    RelayLag(crate::relay_lag::RelayLagArgs),
}

/// What every subcommand takes.
#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// Name server address(es), `;`-separated.
    #[arg(
        short = 'n',
        long = "namesrv",
        visible_alias = "namesrvAddr",
        default_value = "127.0.0.1:9876"
    )]
    pub namesrv: String,
    /// Topic.
    #[arg(short = 't', long = "topic", default_value = "BenchmarkTest")]
    pub topic: String,
    /// TCP connections to each broker; tasks (or queues, for consumers) are
    /// spread over them.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub connections: u32,
    /// Seconds measured, after the warm-up. 0 means no limit (stop with
    /// Ctrl-C, or when `-q` messages are sent / the backlog is consumed).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds run before measuring starts; not counted.
    #[arg(long, default_value_t = 3.0)]
    pub warmup: f64,
    /// Header encoding of sends and pulls: JSON (what the Java client
    /// sends by default) or RocketMQ's binary encoding (what RocketMQ's own
    /// benchmark tool switches to).
    #[arg(long = "serialize-type", value_enum, default_value_t = HeaderEncoding::Json)]
    pub serialize_type: HeaderEncoding,
    /// Print only one JSON object on stdout (progress still goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Connect with TLS (any server certificate accepted, as RocketMQ's
    /// clients by default).
    #[arg(long)]
    pub tls: bool,
    /// Sign every request with this account (brokers with aclEnable=true).
    #[arg(long = "accessKey")]
    pub access_key: Option<String>,
    #[arg(long = "secretKey", requires = "access_key")]
    pub secret_key: Option<String>,
}

impl CommonArgs {
    /// The connector and the credentials the tool's connections use.
    pub fn security(
        &self,
    ) -> anyhow::Result<(
        meridian_remoting::tls::Connector,
        Option<meridian_remoting::acl::Credentials>,
    )> {
        let connector = if self.tls {
            meridian_remoting::tls::client_connector(false, None, None, None)?
        } else {
            Default::default()
        };
        let credentials = match (&self.access_key, &self.secret_key) {
            (Some(ak), Some(sk)) => Some(meridian_remoting::acl::Credentials::new(ak, sk)),
            (Some(_), None) => anyhow::bail!("--accessKey needs --secretKey"),
            _ => None,
        };
        Ok((connector, credentials))
    }

    /// An admin client with [`Self::security`].
    pub fn admin(&self) -> anyhow::Result<meridian_client::Admin> {
        let (connector, credentials) = self.security()?;
        Ok(meridian_client::Admin::new(&self.namesrv).with_security(credentials, connector))
    }

    /// Connection pools with [`Self::security`].
    pub fn pools(&self) -> anyhow::Result<crate::target::Pools> {
        let (connector, credentials) = self.security()?;
        Ok(crate::target::Pools::with_security(
            self.connections,
            connector,
            credentials,
        ))
    }
}

/// A remoting header encoding.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderEncoding {
    Json,
    Rocketmq,
}

impl HeaderEncoding {
    pub fn serialize_type(self) -> meridian_protocol::SerializeType {
        match self {
            HeaderEncoding::Json => meridian_protocol::SerializeType::Json,
            HeaderEncoding::Rocketmq => meridian_protocol::SerializeType::RocketMQ,
        }
    }
}

impl CommonArgs {
    pub fn duration(&self) -> Option<Duration> {
        (self.duration > 0.0).then(|| Duration::from_secs_f64(self.duration))
    }

    pub fn warmup(&self) -> Duration {
        Duration::from_secs_f64(self.warmup.max(0.0))
    }
}

/// How producers send.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One request at a time per task, each waiting for its answer.
    Sync,
    /// Up to `--inflight` requests outstanding per task, pipelined on the
    /// connection.
    Async,
    /// Requests that want no answer; latency is not measured.
    Oneway,
    /// SEND_BATCH_MESSAGE with `--batch` messages per request, one request
    /// at a time per task.
    Batch,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Sync => "sync",
            Mode::Async => "async",
            Mode::Oneway => "oneway",
            Mode::Batch => "batch",
        }
    }
}

/// How producers load the broker.
#[derive(Args, Debug, Clone)]
pub struct ProducerArgs {
    /// Producer tasks.
    #[arg(short = 'w', long = "threads", visible_alias = "threadCount", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub threads: u32,
    /// Message body size in bytes.
    #[arg(
        short = 's',
        long = "size",
        visible_alias = "messageSize",
        default_value_t = 1024
    )]
    pub size: usize,
    /// Queues of the topic when the tool creates it (it does when the topic
    /// has no route), on every master of every cluster.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(i32).range(1..=1024))]
    pub queues: i32,
    /// How requests are sent.
    #[arg(long, value_enum, default_value_t = Mode::Sync)]
    pub mode: Mode,
    /// Messages per SEND_BATCH_MESSAGE (`--mode batch`).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch: u32,
    /// Requests outstanding per task in `--mode async`.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub inflight: u32,
    /// Messages per second over all tasks, open loop: each send has an
    /// intended time and its latency counts from it, so a slow answer that
    /// delays later sends shows in their latency. Default: as fast as
    /// possible.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Stop after this many messages in all (warm-up included).
    #[arg(short = 'q', long = "messages", visible_alias = "messageQuantity")]
    pub messages: Option<u64>,
    /// Producer group.
    #[arg(long = "producer-group", default_value = "benchmark_producer")]
    pub producer_group: String,
    /// Milliseconds to wait for a send's answer.
    #[arg(long = "send-timeout", default_value_t = 3000)]
    pub send_timeout_ms: u64,
}

#[derive(Args, Debug, Clone)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub producer: ProducerArgs,
}

/// How consumers pull.
#[derive(Args, Debug, Clone)]
pub struct ConsumerArgs {
    /// Consumer group.
    #[arg(
        short = 'g',
        long = "group",
        visible_alias = "consumerGroup",
        default_value = "benchmark_consumer"
    )]
    pub group: String,
    /// Messages asked for per pull.
    #[arg(long = "pull-batch", default_value_t = 32, value_parser = clap::value_parser!(i32).range(1..=1024))]
    pub pull_batch: i32,
}

#[derive(Args, Debug, Clone)]
pub struct ConsumeArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub consumer: ConsumerArgs,
    /// Consume the backlog: every queue from offset 0 up to the offset it
    /// had when the run started, then stop. Without it, consumers start at
    /// the end of every queue and receive what arrives.
    #[arg(long)]
    pub from_start: bool,
}

#[derive(Args, Debug, Clone)]
pub struct E2eArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub producer: ProducerArgs,
    #[command(flatten)]
    pub consumer: ConsumerArgs,
    /// Seconds consumers keep pulling after producers stop, to receive what
    /// is still on its way.
    #[arg(long, default_value_t = 5.0)]
    pub grace: f64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: BenchCommand,
    }

    #[test]
    fn rocketmq_style_flags_parse() {
        let cli = Cli::try_parse_from([
            "bench",
            "produce",
            "-n",
            "10.0.0.1:9876",
            "-t",
            "T",
            "-w",
            "8",
            "-s",
            "128",
            "--mode",
            "batch",
            "--batch",
            "16",
            "--rate",
            "5000",
            "--json",
        ])
        .unwrap();
        let BenchCommand::Produce(p) = cli.command else {
            panic!("not produce")
        };
        assert_eq!(p.common.namesrv, "10.0.0.1:9876");
        assert_eq!(p.common.topic, "T");
        assert_eq!(p.producer.threads, 8);
        assert_eq!(p.producer.size, 128);
        assert_eq!(p.producer.mode, Mode::Batch);
        assert_eq!(p.producer.batch, 16);
        assert_eq!(p.producer.rate, Some(5000.0));
        assert!(p.common.json);
    }

    #[test]
    fn defaults() {
        let cli = Cli::try_parse_from(["bench", "consume", "--from-start"]).unwrap();
        let BenchCommand::Consume(c) = cli.command else {
            panic!("not consume")
        };
        assert_eq!(c.common.topic, "BenchmarkTest");
        assert_eq!(c.common.connections, 1);
        assert_eq!(c.consumer.group, "benchmark_consumer");
        assert!(c.from_start);
        let cli = Cli::try_parse_from(["bench", "e2e"]).unwrap();
        let BenchCommand::E2e(e) = cli.command else {
            panic!("not e2e")
        };
        assert_eq!(e.producer.threads, 64);
        assert_eq!(e.producer.size, 1024);
        assert_eq!(e.producer.queues, 8);
        assert_eq!(e.producer.mode, Mode::Sync);
        assert_eq!(e.common.duration(), Some(Duration::from_secs(10)));
    }
}
