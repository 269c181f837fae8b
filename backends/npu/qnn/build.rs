//! With the `bindgen` feature, generates bindings from the user's own QNN SDK headers
//! (`QNN_SDK_ROOT/include/QNN`) into OUT_DIR, so `sys::sdk_check` can assert at compile time
//! that the hand-written declarations have the SDK's sizes and offsets. The generated file is
//! never committed. Without the feature this script does nothing.

fn main() {
    #[cfg(feature = "bindgen")]
    generate();
}

#[cfg(feature = "bindgen")]
fn generate() {
    use std::path::PathBuf;
    println!("cargo:rerun-if-env-changed=QNN_SDK_ROOT");
    let root = std::env::var_os("QNN_SDK_ROOT").map(PathBuf::from).unwrap_or_else(|| {
        panic!("the `bindgen` feature checks our declarations against your QNN SDK: set QNN_SDK_ROOT")
    });
    let include = root.join("include").join("QNN");
    let header = include.join("QnnInterface.h");
    if !header.exists() {
        panic!(
            "{} does not exist: QNN_SDK_ROOT must point at a QNN SDK",
            header.display()
        );
    }
    let mut builder = bindgen::Builder::default()
        .header(header.display().to_string())
        .clang_arg(format!("-I{}", include.display()))
        .allowlist_type("Qnn_Tensor_t|Qnn_TensorV1_t|Qnn_QuantizeParams_t|Qnn_Param_t|Qnn_Scalar_t|Qnn_OpConfig_t|Qnn_OpConfigV1_t|Qnn_ClientBuffer_t|Qnn_MemDescriptor_t|QnnInterface_t|QnnProfile_EventData_t|Qnn_Version_t|Qnn_ApiVersion_t")
        .layout_tests(false);
    for extra in ["HTP/QnnHtpDevice.h", "HTP/QnnHtpGraph.h"] {
        let h = include.join(extra);
        if h.exists() {
            builder = builder
                .header(h.display().to_string())
                .allowlist_type("QnnHtpDevice_CustomConfig_t|QnnHtpGraph_CustomConfig_t");
        }
    }
    let bindings = builder
        .generate()
        .expect("bindgen could not parse the QNN headers");
    let out =
        PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("qnn_sdk.rs");
    bindings
        .write_to_file(out)
        .expect("cannot write the generated bindings");
}
