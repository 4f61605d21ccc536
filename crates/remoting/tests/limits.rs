//! The per-connection bound on requests in flight: past it a peer gets
//! SYSTEM_BUSY at once instead of the server queueing without limit, and
//! the connection keeps serving.

use std::sync::Arc;
use std::time::Duration;

use meridian_protocol::codes::response_code;
use meridian_protocol::RemotingCommand;
use meridian_remoting::{serve, Connection, ConnectionLimits, Handler, RemotingClient, Reply};

/// Code 1 never finishes (a request that waits, like a long poll); code 2
/// is answered at once.
struct Slow;

impl Handler for Slow {
    fn handle(&self, _conn: &Arc<Connection>, req: RemotingCommand) -> Reply {
        if req.code == 1 {
            Reply::Later(Box::pin(async move {
                std::future::pending::<()>().await;
                None
            }))
        } else {
            Reply::Now(Some(req.response_to(response_code::SUCCESS, None)))
        }
    }
}

#[tokio::test]
async fn requests_past_the_in_flight_limit_get_system_busy() {
    let limits = ConnectionLimits {
        max_in_flight: 2,
        ..Default::default()
    };
    let server = serve("127.0.0.1:0".parse().unwrap(), Arc::new(Slow), limits)
        .await
        .unwrap();
    let addr = server.local_addr().to_string();
    let client = Arc::new(RemotingClient::new());

    // Below the limit a request is served.
    let ok = client
        .invoke(&addr, RemotingCommand::request(2), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(ok.code, response_code::SUCCESS);

    // Two requests that never finish fill the connection's budget.
    for _ in 0..2 {
        let (client, addr) = (client.clone(), addr.clone());
        tokio::spawn(async move {
            let _ = client
                .invoke(&addr, RemotingCommand::request(1), Duration::from_secs(60))
                .await;
        });
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let third = client
        .invoke(&addr, RemotingCommand::request(2), Duration::from_secs(5))
        .await
        .expect("a busy server still answers");
    assert_eq!(third.code, response_code::SYSTEM_BUSY);
    assert!(third.remark.unwrap_or_default().contains("max 2"));
    server.stop();
}
