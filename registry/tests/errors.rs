//! Opening failures keep their structure: a program can match on the cause, and the message a
//! user reads is the backend's own.

use shadowattn_hal::library::LibraryError;
use shadowattn_hal::HalError;
use shadowattn_neuron::NeuronError;
use shadowattn_qnn::{QnnError, QnnLibrary};
use shadowattn_registry::{BackendError, NpuSpec, OpenOptions, SocRef};
use shadowattn_simulator::SimError;
use std::path::PathBuf;

#[test]
fn a_missing_vendor_library_lists_every_place_tried() {
    // The loader's own search (without the environment, which CI points at the emulator).
    let bad = PathBuf::from("/nonexistent/libQnnHtp.so");
    let e = BackendError::from(QnnLibrary::find_in(Some(&bad), None, None).unwrap_err());
    let BackendError::Qnn(QnnError::Library(LibraryError::Load { attempts, .. })) = &e else {
        panic!("not a QNN load error: {e:?}");
    };
    assert_eq!(attempts[0].path, "/nonexistent/libQnnHtp.so");
    assert_eq!(attempts[0].origin, "explicit path");
    assert!(e.to_string().contains("/nonexistent/libQnnHtp.so"), "{e}");
    // Through the HAL's error the list survives too.
    let BackendError::Qnn(q) = e else {
        unreachable!()
    };
    let h = HalError::from(q);
    assert!(
        matches!(&h, HalError::Load { backend, attempts } if backend == "qnn:htp" && attempts[0].origin == "explicit path"),
        "{h:?}"
    );
    if std::env::var_os(shadowattn_neuron::loader::ENV_LIB).is_none() {
        let options = OpenOptions {
            neuron_library: Some(PathBuf::from("/nonexistent/libneuron.so")),
            ..OpenOptions::default()
        };
        let e = NpuSpec::Neuron.open(&options).unwrap_err();
        assert!(
            matches!(&e, BackendError::Neuron(NeuronError::Library(LibraryError::Load { attempts, .. })) if attempts[0].path == "/nonexistent/libneuron.so"),
            "{e:?}"
        );
    }
}

#[test]
fn a_bad_profile_file_names_its_path() {
    let e = NpuSpec::Sim(SocRef::File("/nonexistent/soc.toml".into()))
        .open(&OpenOptions::default())
        .unwrap_err();
    assert!(
        matches!(&e, BackendError::Sim(SimError::Io { path, .. }) if path == "/nonexistent/soc.toml"),
        "{e:?}"
    );
    assert!(e.to_string().contains("cannot read SoC profile"), "{e}");
}

#[test]
fn a_name_c_cannot_carry_is_an_argument_error_not_a_deserialization_error() {
    let h = HalError::from(QnnError::InvalidName {
        name: "a\0b".into(),
    });
    assert!(
        matches!(&h, HalError::InvalidArgument { argument, .. } if argument == "name"),
        "{h:?}"
    );
}

#[test]
fn fp16_arithmetic_opens_on_cpu_fast_only() {
    use shadowattn_cpu::fast::Arithmetic;
    use shadowattn_registry::ComputeSpec;
    let options = OpenOptions {
        cpu_arithmetic: Arithmetic::F16,
        ..OpenOptions::default()
    };
    let fast: ComputeSpec = "cpu-fast:1".parse().unwrap();
    assert!(fast.open(&options).is_ok());
    for name in ["cpu", "opencl"] {
        let spec: ComputeSpec = name.parse().unwrap();
        let e = spec.open(&options).expect_err("refused");
        assert!(
            matches!(e, BackendError::Hal(HalError::InvalidArgument { .. })),
            "{e:?}"
        );
        assert!(
            e.to_string().contains(&format!(
                "f16 arithmetic exists on cpu-fast only, not on `{name}`"
            )),
            "{e}"
        );
    }
}
