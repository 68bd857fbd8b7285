//! Compiles the official CloudEvents protobuf format (`proto/cloudevents.proto`) with prost.
//! protoc comes from `protoc-bin-vendored`, so a fresh clone builds without a system protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC from the environment.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let include = protoc_bin_vendored::include_path()?;
    prost_build::Config::new()
        .bytes(["."])
        // Attribute maps are small (a handful of entries): a B-tree beats hashing each key,
        // and iterates in a fixed order, so the same event always encodes the same way.
        .btree_map(["."])
        .compile_protos(
            &["proto/cloudevents.proto"],
            &[std::path::Path::new("proto"), &include],
        )?;
    println!("cargo:rerun-if-changed=proto/cloudevents.proto");
    Ok(())
}
