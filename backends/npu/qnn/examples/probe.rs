//! Prints the QNN library in use, its version and the ops it accepts with their
//! (input type -> output type) combinations.
//!
//! `SHADOWATTN_QNN_LIB=target/qnn-emulator/onnxruntime_qnn/libQnnHtp.so cargo run -p shadowattn-qnn --example probe`
use shadowattn_hal::NpuBackend;
use shadowattn_qnn::{QnnBackend, QnnOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let b = QnnBackend::open(QnnOptions::default())?;
    println!("library: {}", b.library().path());
    println!("version: {}", b.version());
    for (op, signatures) in &b.capabilities().ops {
        let list: Vec<String> = signatures.iter().map(|s| s.to_string()).collect();
        println!("{op}: {}", list.join(", "));
    }
    Ok(())
}
