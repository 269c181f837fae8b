//! Graph I/O in registered shared memory, through the fake QNN library acting as both QNN and
//! rpcmem: its memRegister validates every descriptor, its graphExecute refuses unknown handles
//! and computes each output from the inputs through whichever memory the tensors name. Results
//! must be the same with registered and client buffers, the backend must report which it uses,
//! and every fallback must name its reason.

use shadowattn_hal::{CompiledGraph, Graph, HostTensor, NpuBackend};
use shadowattn_qnn::{ClientReason, IoBuffers, QnnBackend, QnnOptions};

mod support;
use support::fake_loader::Fake;
use support::pilot;

fn inputs(graph: &Graph, seed: u8) -> Vec<HostTensor> {
    graph
        .input_descs()
        .enumerate()
        .map(|(i, d)| {
            let mut t = HostTensor::zeros(d.clone()).unwrap();
            for (j, b) in t.bytes_mut().iter_mut().enumerate() {
                *b = seed
                    .wrapping_mul(7)
                    .wrapping_add((j as u8).wrapping_mul(13))
                    .wrapping_add(i as u8 * 101);
            }
            t
        })
        .collect()
}

fn run(compiled: &mut dyn CompiledGraph, ins: &[HostTensor]) -> Vec<Vec<u8>> {
    let g = compiled.graph().clone();
    let mut outs: Vec<HostTensor> = g
        .output_descs()
        .map(|d| HostTensor::zeros(d.clone()).unwrap())
        .collect();
    let views: Vec<_> = ins.iter().map(|t| t.view()).collect();
    let mut out_views: Vec<_> = outs.iter_mut().map(|t| t.view_mut()).collect();
    compiled.execute(&views, &mut out_views).unwrap();
    outs.iter().map(|t| t.bytes().to_vec()).collect()
}

/// What the fake computes (its `fake_output_byte`), for every output of `graph`.
fn expected(graph: &Graph, ins: &[HostTensor]) -> Vec<Vec<u8>> {
    let bytes: Vec<&[u8]> = ins.iter().map(|t| t.bytes()).collect();
    graph
        .output_descs()
        .enumerate()
        .map(|(o, d)| {
            (0..d.size_bytes())
                .map(|j| {
                    let sum = bytes
                        .iter()
                        .fold(0u8, |acc, i| acc.wrapping_add(i[j % i.len()]));
                    sum ^ (j as u8).wrapping_mul(31) ^ (o as u8)
                })
                .collect()
        })
        .collect()
}

/// Compiles and runs the pilot twice with different inputs; checks every result against what
/// the fake computes, and returns the graph's report.
fn compile_and_check(qnn: &QnnBackend) -> IoBuffers {
    let g = pilot();
    let mut compiled = qnn.compile_qnn(&g).unwrap();
    let report = compiled.executable().io_buffers();
    for seed in [3, 200] {
        let ins = inputs(&g, seed);
        assert_eq!(run(&mut compiled, &ins), expected(&g, &ins), "seed {seed}");
    }
    report
}

#[test]
fn registered_io_gives_the_same_results_as_client_buffers_and_says_so() {
    let fake = Fake::new("shm_registered");
    let qnn = fake.open_shared().unwrap();
    assert_eq!(qnn.io_buffers(), IoBuffers::Registered);
    assert!(
        qnn.version()
            .ends_with("; graph I/O: registered rpcmem (zero copy)"),
        "{}",
        qnn.version()
    );
    assert_eq!(fake.registered(), 0, "the probe's registration was undone");
    assert_eq!(fake.rpcmem_live(), 0, "the probe's buffer was freed");

    let g = pilot();
    let mut registered = qnn.compile_qnn(&g).unwrap();
    assert_eq!(registered.executable().io_buffers(), IoBuffers::Registered);
    assert_eq!(fake.registered(), 3, "q, k and scores");
    assert_eq!(fake.rpcmem_live(), 3);

    let client_qnn = fake
        .open_with(QnnOptions {
            rpcmem_library: Some(fake.path.clone()),
            client_buffers_only: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        client_qnn.io_buffers(),
        IoBuffers::Client {
            reason: ClientReason::Disabled
        }
    );
    let mut client = client_qnn.compile_qnn(&g).unwrap();
    assert_eq!(fake.registered(), 3, "client buffers register nothing");

    for seed in [1, 77, 254] {
        let ins = inputs(&g, seed);
        let before = fake.executed_handles();
        let via_shared = run(&mut registered, &ins);
        assert_eq!(
            fake.executed_handles() - before,
            3,
            "every input and output went through its handle"
        );
        let via_client = run(&mut client, &ins);
        assert_eq!(fake.executed_handles() - before, 3, "client runs use none");
        assert_eq!(via_shared, via_client, "seed {seed}");
        assert_eq!(via_shared, expected(&g, &ins), "seed {seed}");
    }
    drop(registered);
    assert_eq!(
        fake.registered(),
        0,
        "dropping the graph deregisters its memory"
    );
    assert_eq!(fake.rpcmem_live(), 0, "and frees it");
    drop(client);
    drop(client_qnn);
    drop(qnn);
    assert_eq!(fake.live(), 0);
}

#[test]
fn without_rpcmem_the_backend_uses_client_buffers_and_names_every_place_tried() {
    let fake = Fake::new("shm_no_rpcmem");
    let qnn = fake
        .open_with(QnnOptions {
            rpcmem_library: Some("/nonexistent/libcdsprpc.so".into()),
            ..Default::default()
        })
        .unwrap();
    let IoBuffers::Client {
        reason: ClientReason::NoRpcMem(why),
    } = qnn.io_buffers()
    else {
        panic!("{:?}", qnn.io_buffers())
    };
    assert!(
        why.contains("/nonexistent/libcdsprpc.so (explicit path): "),
        "{why}"
    );
    assert!(
        qnn.version()
            .contains("; graph I/O: client buffers (copied): libcdsprpc.so not found: "),
        "{}",
        qnn.version()
    );
    assert!(matches!(compile_and_check(&qnn), IoBuffers::Client { .. }));
    assert_eq!(fake.executed_handles(), 0);
}

#[test]
fn a_library_without_mem_register_falls_back_with_the_reason() {
    let fake = Fake::new("shm_no_slot");
    fake.set_mem_register(false);
    let qnn = fake.open_shared().unwrap();
    let reason = ClientReason::NoMemRegister;
    assert_eq!(
        qnn.io_buffers(),
        IoBuffers::Client {
            reason: reason.clone()
        }
    );
    assert!(
        qnn.version()
            .ends_with(&format!("graph I/O: client buffers (copied): {reason}")),
        "{}",
        qnn.version()
    );
    assert_eq!(compile_and_check(&qnn), IoBuffers::Client { reason });
    assert_eq!(fake.rpcmem_live(), 0);
}

#[test]
fn a_refused_registration_falls_back_with_the_qnn_code() {
    let fake = Fake::new("shm_refused");
    fake.configure(Some("memRegister"), 8001, 40);
    let qnn = fake.open_shared().unwrap();
    let IoBuffers::Client {
        reason: ClientReason::QnnCall { call, code, .. },
    } = qnn.io_buffers()
    else {
        panic!("{:?}", qnn.io_buffers())
    };
    assert_eq!((call, code), ("memRegister", 8001));
    assert!(
        qnn.version()
            .contains("graph I/O: client buffers (copied): memRegister returned 0x1f41 (8001): "),
        "{}",
        qnn.version()
    );
    assert_eq!(fake.rpcmem_live(), 0, "the probe's buffer was freed");
    fake.configure(None, 0, 40);
    assert!(matches!(compile_and_check(&qnn), IoBuffers::Client { .. }));
    assert_eq!(fake.registered(), 0);
}

#[test]
fn a_registration_refused_at_compile_turns_the_backend_to_client_buffers() {
    let fake = Fake::new("shm_late");
    let qnn = fake.open_shared().unwrap();
    assert_eq!(qnn.io_buffers(), IoBuffers::Registered);
    fake.configure(Some("memRegister"), 8001, 40);
    let report = compile_and_check(&qnn);
    assert!(
        matches!(
            &report,
            IoBuffers::Client {
                reason: ClientReason::QnnCall {
                    call: "memRegister",
                    code: 8001,
                    ..
                }
            }
        ),
        "{report:?}"
    );
    assert_eq!(qnn.io_buffers(), report, "the backend reports the fallback");
    assert_eq!(fake.registered(), 0);
    assert_eq!(fake.rpcmem_live(), 0);
    // Later graphs keep client buffers, even once registration would work again.
    fake.configure(None, 0, 40);
    assert_eq!(compile_and_check(&qnn), report);
    drop(qnn);
    assert_eq!(fake.live(), 0);
}
