//! Prints the fitted parameters and the predicted-vs-published calibration table.
fn main() {
    print!(
        "{}",
        shadowattn_simulator::calibration::calibration_report()
    );
}
