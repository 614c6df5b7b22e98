//! Compiles proto/csi.proto and proto/pluginregistration.proto with protox
//! (pure Rust: no system protoc needed).

fn main() {
    let protos = ["../proto/csi.proto", "../proto/pluginregistration.proto"];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["../proto"]).expect("the protos compile");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)
        .expect("generate the gRPC bindings");
}
