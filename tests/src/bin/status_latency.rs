//! `status_latency ADDRESS [N] [NAME]`: times N `Status` calls to one agent over one
//! connection (after a few warm-up calls) and prints `p50_ms p99_ms max_ms deployments` on
//! one line. Without NAME each call asks for every deployment (what `deployctl status`
//! asks); with NAME, for that one. Used by `scripts/bench.sh`.

use std::time::{Duration, Instant};

use deployctl_proto::v1::agent_client::AgentClient;
use deployctl_proto::v1::StatusRequest;

const WARM_UP: usize = 20;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let Some(address) = args.next() else {
        eprintln!(
            "usage: status_latency ADDRESS [N] [NAME]   (ADDRESS like http://127.0.0.1:7070)"
        );
        std::process::exit(2);
    };
    let n: usize = match args.next().map(|s| s.parse()) {
        None => 1000,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("N: give a positive number of calls");
            std::process::exit(2);
        }
    };
    let name = args.next().unwrap_or_default();
    let mut client = match AgentClient::connect(address.clone()).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot connect to {address}: {e}");
            std::process::exit(1);
        }
    };
    let mut times = Vec::with_capacity(n);
    let mut deployments = 0;
    for i in 0..WARM_UP + n {
        let began = Instant::now();
        let reply = client
            .status(StatusRequest {
                name: name.clone(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|s| {
                eprintln!("Status failed: {}", s.message());
                std::process::exit(1);
            });
        let took = began.elapsed();
        deployments = reply.into_inner().deployments.len();
        if i >= WARM_UP {
            times.push(took);
        }
    }
    times.sort();
    let ms = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1000.0);
    let at = |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
    println!(
        "{} {} {} {deployments}",
        ms(at(0.50)),
        ms(at(0.99)),
        ms(*times.last().unwrap())
    );
}
