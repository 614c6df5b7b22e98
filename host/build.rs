//! Compiles proto/csi.proto with protox (pure Rust: no system protoc needed).

fn main() {
    let proto = "../proto/csi.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["../proto"]).expect("proto/csi.proto compiles");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)
        .expect("generate CSI bindings");
}
