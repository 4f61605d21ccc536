//! Keeps docs/compat/request-codes.md true. Its tables say, per request
//! code, whether Meridian serves it; this test reads them and asks a real
//! name server and broker (separate processes) each code, with no header
//! and no body:
//! - a code marked *not supported* is answered REQUEST_CODE_NOT_SUPPORTED
//!   with a remark that names the code and gives the reason;
//! - a code marked *served* is answered with anything else (a missing
//!   header is an error of its own, which is fine);
//! - each row's RocketMQ name is the one `meridian_protocol` gives the code.

mod support;

use meridian_client::Admin;
use meridian_protocol::codes::{request_code, response_code};
use meridian_protocol::RemotingCommand;
use support::{Cluster, ClusterOpts};

const DOC: &str = include_str!("../../../docs/compat/request-codes.md");

#[derive(Debug, PartialEq)]
enum Mark {
    Served,
    NotSupported,
}

#[derive(Debug)]
struct Row {
    code: i32,
    name: String,
    /// "broker" or "namesrv".
    to: &'static str,
    mark: Mark,
    line: usize,
}

/// Every row of every table of the page that has a `code` column and a
/// `Meridian` column (the client-to-server table and the table of codes
/// often asked about; the broker-to-client table says what Meridian sends,
/// not what it answers).
fn rows(doc: &str) -> Vec<Row> {
    let mut out = Vec::new();
    let mut columns: Option<Vec<String>> = None;
    for (i, line) in doc.lines().enumerate() {
        let line = line.trim();
        if !line.starts_with('|') {
            columns = None;
            continue;
        }
        let cells: Vec<String> = line
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_string())
            .collect();
        let Some(cols) = &columns else {
            columns = Some(cells);
            continue;
        };
        if cells.iter().all(|c| c.chars().all(|ch| "-: ".contains(ch))) {
            continue; // the |---| line under the header
        }
        let col = |name: &str| cols.iter().position(|c| c == name);
        let (Some(code_col), Some(meridian_col)) = (col("code"), col("Meridian")) else {
            continue;
        };
        let code: i32 = cells[code_col]
            .parse()
            .unwrap_or_else(|_| panic!("line {}: `{}` is not a code", i + 1, cells[code_col]));
        let verdict = cells[meridian_col].to_lowercase();
        let mark = if verdict.starts_with("served") {
            Mark::Served
        } else if verdict.starts_with("not supported") {
            Mark::NotSupported
        } else {
            panic!(
                "line {}: code {code} is marked neither served nor not supported: `{}`",
                i + 1,
                cells[meridian_col]
            )
        };
        // The `to` column, else what the Meridian cell says.
        let to = match col("to").map(|c| cells[c].as_str()) {
            Some("namesrv") => "namesrv",
            Some("broker") => "broker",
            Some(other) => panic!("line {}: unknown target `{other}`", i + 1),
            None if verdict.contains("name server") || verdict.contains("namesrv") => "namesrv",
            None => "broker",
        };
        let name = col("RocketMQ name")
            .and_then(|c| cells[c].split_whitespace().next())
            .unwrap_or_default()
            .to_string();
        out.push(Row {
            code,
            name,
            to,
            mark,
            line: i + 1,
        });
    }
    out
}

#[test]
fn the_tables_parse_and_name_each_code_as_rocketmq_does() {
    let rows = rows(DOC);
    assert!(
        rows.len() >= 35,
        "only {} rows read from request-codes.md: has its layout changed?",
        rows.len()
    );
    assert!(rows.iter().any(|r| r.mark == Mark::NotSupported));
    assert!(rows.iter().any(|r| r.to == "namesrv"));
    for r in &rows {
        assert_eq!(
            request_code::name(r.code),
            Some(r.name.as_str()),
            "line {}: code {} is called {} in the table",
            r.line,
            r.code,
            r.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_code_is_answered_as_the_table_says() {
    let cluster = Cluster::separate(ClusterOpts::new());
    let admin = Admin::new(&cluster.namesrv_addr());
    let mut wrong = Vec::new();
    let rows = rows(DOC);
    for r in &rows {
        let addr = match r.to {
            "namesrv" => cluster.namesrv_addr(),
            _ => cluster.broker_addr(),
        };
        let answer = admin
            .call(&addr, RemotingCommand::request(r.code))
            .await
            .unwrap_or_else(|e| panic!("code {} ({}) to the {}: {e}", r.code, r.name, r.to));
        let remark = answer.remark.clone().unwrap_or_default();
        match r.mark {
            Mark::NotSupported => {
                let reason = remark.split_once(": ").map_or("", |(_, why)| why);
                if answer.code != response_code::REQUEST_CODE_NOT_SUPPORTED
                    || !remark.contains(&r.code.to_string())
                    || !remark.contains(&r.name)
                    || reason.len() < 20
                {
                    wrong.push(format!(
                        "line {}: {} {} is marked not supported, answered {} `{remark}` (want code 3 naming it, with a reason)",
                        r.line, r.code, r.name, answer.code
                    ));
                }
            }
            Mark::Served => {
                if answer.code == response_code::REQUEST_CODE_NOT_SUPPORTED {
                    wrong.push(format!(
                        "line {}: {} {} is marked served, but the {} answered not supported: `{remark}`",
                        r.line, r.code, r.name, r.to
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "request-codes.md disagrees with the servers:\n{}",
        wrong.join("\n")
    );
    eprintln!(
        "{} codes checked: {} served, {} not supported",
        rows.len(),
        rows.iter().filter(|r| r.mark == Mark::Served).count(),
        rows.iter().filter(|r| r.mark == Mark::NotSupported).count()
    );
}
