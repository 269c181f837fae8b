//! Loader failures and injected QNN errors, through a fake QNN library that fails on demand.
//! Every failure must be a typed error carrying the QNN code and message, free every handle,
//! and never panic or hang.

use shadowattn_hal::{HalError, HostTensor, NpuBackend};
use shadowattn_qnn::{LibraryError, QnnError, QnnLibrary};
use std::path::Path;

mod support;
use support::fake_loader::Fake;
use support::pilot;

#[test]
fn a_missing_library_lists_every_path_tried() {
    let e = QnnLibrary::find_in(
        Some(Path::new("/nonexistent/libQnnHtp.so")),
        Some("/also/missing/libQnnHtp.so".into()),
        Some("/no/sdk".into()),
    )
    .unwrap_err();
    let QnnError::Library(LibraryError::Load { attempts, .. }) = &e else {
        panic!("{e}")
    };
    assert_eq!(attempts.len(), 4, "{e}");
    assert_eq!(attempts[0].path, "/nonexistent/libQnnHtp.so");
    assert_eq!(attempts[0].origin, "explicit path");
    assert_eq!(attempts[1].origin, "$SHADOWATTN_QNN_LIB");
    assert!(attempts[2].path.starts_with("/no/sdk/lib/") && attempts[2].origin == "$QNN_SDK_ROOT");
    assert_eq!(attempts[3].path, "libQnnHtp.so");
    assert_eq!(attempts[3].origin, "candidate name");
    let text = e.to_string();
    assert!(
        text.contains("/nonexistent/libQnnHtp.so (explicit path): ")
            && text.contains("cannot load"),
        "{text}"
    );
}

#[test]
fn a_library_without_the_entry_point_names_the_symbol() {
    let e = QnnLibrary::open("libm.so.6").unwrap_err();
    assert!(
        matches!(&e, QnnError::Library(LibraryError::MissingSymbol { symbol, .. }) if symbol == "QnnInterface_getProviders"),
        "{e}"
    );
}

#[test]
fn an_old_api_version_is_refused_before_the_table_is_used() {
    let fake = Fake::new("old");
    fake.configure(None, 0, 10);
    let e = QnnLibrary::open(fake.path.to_str().unwrap()).unwrap_err();
    assert!(
        e.to_string()
            .contains("core API 2.10 is older than the required 2.14"),
        "{e}"
    );
}

#[test]
fn backend_create_errors_carry_code_and_message_and_free_the_log() {
    let fake = Fake::new("backend");
    fake.configure(Some("backendCreate"), 4000, 40);
    let e = fake.open().unwrap_err();
    assert!(
        matches!(&e, QnnError::Call { call: "backendCreate", code: 4000, message } if message.contains("CANNOT_INITIALIZE")),
        "{e}"
    );
    assert_eq!(fake.live(), 0, "the log handle was freed");
}

#[test]
fn context_create_errors_are_vendor_errors_without_leaks() {
    let fake = Fake::new("context");
    fake.configure(Some("contextCreate"), 5000, 40);
    let qnn = fake.open().unwrap();
    let e = qnn.compile(&pilot()).unwrap_err();
    assert!(
        matches!(&e, HalError::Vendor { call, code: 5000, .. } if call == "contextCreate"),
        "{e}"
    );
    drop(qnn);
    assert_eq!(fake.live(), 0);
}

#[test]
fn finalize_errors_free_the_context_and_profile() {
    let fake = Fake::new("finalize");
    fake.configure(Some("graphFinalize"), 6022, 40);
    let qnn = fake.open().unwrap();
    let e = qnn.compile(&pilot()).unwrap_err();
    assert!(
        matches!(&e, HalError::Vendor { call, code: 6022, message, .. } if call == "graphFinalize" && message.contains("FINALIZE_FAILED")),
        "{e}"
    );
    assert_eq!(fake.live(), 3, "only log, backend and device remain");
    drop(qnn);
    assert_eq!(fake.live(), 0);
}

#[test]
fn execute_errors_are_typed_and_the_graph_still_frees() {
    let fake = Fake::new("execute");
    fake.configure(Some("graphExecute"), 6031, 40);
    let qnn = fake.open().unwrap();
    let g = pilot();
    let mut compiled = qnn.compile(&g).unwrap();
    let ins: Vec<HostTensor> = g
        .input_descs()
        .map(|d| HostTensor::zeros(d.clone()).unwrap())
        .collect();
    let mut out = HostTensor::zeros(g.output_descs().next().unwrap().clone()).unwrap();
    let views: Vec<_> = ins.iter().map(|t| t.view()).collect();
    let e = compiled.execute(&views, &mut [out.view_mut()]).unwrap_err();
    assert!(
        matches!(&e, HalError::Vendor { call, code: 6031, .. } if call == "graphExecute"),
        "{e}"
    );
    fake.configure(None, 0, 40);
    compiled.execute(&views, &mut [out.view_mut()]).unwrap();
    drop(compiled);
    drop(qnn);
    assert_eq!(fake.live(), 0);
}

#[test]
fn refused_ops_are_unsupported_errors_naming_the_node() {
    let fake = Fake::new("validate");
    fake.configure(Some("backendValidateOpConfig"), 3110, 40);
    let qnn = fake.open().unwrap();
    let e = qnn.compile(&pilot()).unwrap_err();
    assert!(
        matches!(&e, HalError::Unsupported { node, .. } if node == "scores"),
        "{e}"
    );
    assert!(qnn.capabilities().ops.is_empty());
}
