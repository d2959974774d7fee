//! Compiles `deploy/v1/agent.proto` (and the files it imports) with protox (pure Rust), so
//! no `protoc` is needed.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "deploy/v1/agent.proto";
    println!("cargo:rerun-if-changed=deploy");
    println!("cargo:rerun-if-changed=etcd");
    let fds = protox::compile([proto], ["."])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    // Kept for gRPC server reflection.
    std::fs::write(out.join("deploy_v1_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure().compile_fds(fds)?;

    // etcd's KV service, client only, for the CLI's etcd state backend.
    let etcd = protox::compile(["etcd/etcdserverpb/rpc.proto"], ["."])?;
    tonic_prost_build::configure()
        .build_server(false)
        .compile_fds(etcd)?;
    Ok(())
}
