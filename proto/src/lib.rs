//! The gRPC contract between `deployctl` and `deploy-agent`, generated from
//! `proto/deploy/v1/agent.proto` at build time.

#![allow(clippy::large_enum_variant, clippy::doc_lazy_continuation)]

pub mod v1 {
    tonic::include_proto!("deploy.v1");

    /// The encoded file descriptor set, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("deploy_v1_descriptor");
}

/// etcd v3's KV service (a subset of etcd's own rpc.proto), client side.
pub mod etcd {
    pub mod mvccpb {
        tonic::include_proto!("mvccpb");
    }
    pub mod etcdserverpb {
        tonic::include_proto!("etcdserverpb");
    }
}

pub mod registry;
