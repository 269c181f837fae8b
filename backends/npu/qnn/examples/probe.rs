//! Prints the QNN library in use, its version and the ops and input types it accepts.
//!
//! `SHADOWATTN_QNN_LIB=target/qnn-emulator/onnxruntime_qnn/libQnnHtp.so cargo run -p shadowattn-qnn --example probe`
use shadowattn_hal::NpuBackend;
use shadowattn_qnn::{QnnBackend, QnnOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let b = QnnBackend::open(QnnOptions::default())?;
    println!("library: {}", b.library().path());
    println!("version: {}", b.version());
    for (op, dtypes) in &b.capabilities().ops {
        println!("{op}: {dtypes:?}");
    }
    Ok(())
}
