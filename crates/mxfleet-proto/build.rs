//! Compiles `proto/` with protox (a pure-Rust protobuf compiler), so that building
//! mxfleet needs no system `protoc`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = ["mxfleet/raft/v1/raft.proto", "mxfleet/admin/v1/admin.proto"];
    for file in &files {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }
    let descriptors = protox::compile(files, [&root])?;
    tonic_prost_build::configure()
        .bytes(".mxfleet.raft.v1.BlobChunk.data")
        .bytes(".mxfleet.admin.v1.BodyChunk.data")
        .bytes(".mxfleet.admin.v1.SnapshotChunk.data")
        .compile_fds(descriptors)?;
    Ok(())
}
