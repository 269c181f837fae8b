//! Prints the fitted parameters and the predicted-vs-published table of the fit.
fn main() {
    print!("{}", shadowattn_simulator::fit::launch::fit_report());
}
