//! Compiles `proto/secrets/v1/secrets.proto` with `protoc` (Debian:
//! `apt-get install protobuf-compiler`; or set `PROTOC`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/secrets/v1/secrets.proto");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // For server reflection.
        .file_descriptor_set_path(out.join("secrets_descriptor.bin"))
        .compile_protos(&["proto/secrets/v1/secrets.proto"], &["proto"])?;
    Ok(())
}
