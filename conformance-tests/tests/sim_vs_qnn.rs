//! The simulator predicts the device. On every case, `sim:sa8255` declares unsupported exactly
//! what Qualcomm's HTP (the emulator, socModel 52 = SA8255) refuses; on every graph case both
//! run, their outputs agree: f32 graphs bit for bit or within the case's acceptable f16 bound
//! (the simulator computes them in f16 as HTP V73 does, but HTP's f16 kernels round inside
//! differently from one exact f16 rounding per op), integer outputs within one step (HTP's
//! requantization does not round as the golden rule does: not yet modelled).

use shadowattn_conformance::seeded::seeded_inputs;
use shadowattn_conformance::{all_cases, run_case, CaseKind, Status};
use shadowattn_cpu::reference::graph::decode;
use shadowattn_hal::{DType, Graph, HostTensor, NpuBackend};
use shadowattn_registry::{NpuSpec, OpenOptions, SocRef};
use shadowattn_test_support::{missing_dependency, qnn_emulator, target_dir};

/// Both backends, or `None` (with the skip reason printed) where the emulator is absent.
fn backends() -> Option<(Box<dyn NpuBackend>, Box<dyn NpuBackend>)> {
    let Some(lib) = qnn_emulator(&target_dir(env!("CARGO_TARGET_TMPDIR"))) else {
        // Fails in CI (CI=true), skips locally with a reason.
        missing_dependency(
            "Qualcomm HTP emulator",
            "run `bash ci/qnn-emulator.sh` or set SHADOWATTN_QNN_LIB",
        );
        return None;
    };
    let options = OpenOptions {
        qnn_library: Some(lib),
        ..OpenOptions::default()
    };
    let qnn = NpuSpec::Qnn {
        soc_model: Some(52),
    }
    .open(&options)
    .unwrap();
    let sim = NpuSpec::Sim(SocRef::Builtin("sa8255".into()))
        .open(&options)
        .unwrap();
    Some((qnn.backend, sim.backend))
}

fn outputs(npu: &dyn NpuBackend, graph: &Graph, seed: u64) -> Vec<(DType, Vec<f64>)> {
    let inputs = seeded_inputs(graph, seed);
    let views: Vec<_> = inputs.iter().map(|t| t.view()).collect();
    let mut outs: Vec<HostTensor> = graph
        .output_descs()
        .map(|d| HostTensor::zeros(d.clone()).unwrap())
        .collect();
    let mut out_views: Vec<_> = outs.iter_mut().map(|t| t.view_mut()).collect();
    npu.compile(graph)
        .unwrap()
        .execute(&views, &mut out_views)
        .unwrap();
    outs.iter()
        .map(|t| (t.desc().dtype, decode(t.bytes(), t.desc().dtype)))
        .collect()
}

#[test]
fn sim_sa8255_supports_what_qnn_htp_52_supports() {
    let Some((qnn, sim)) = backends() else { return };
    let mut mismatches = Vec::new();
    let mut unsupported = 0;
    for case in all_cases() {
        let (q, s) = (run_case(qnn.as_ref(), &case), run_case(sim.as_ref(), &case));
        let refused = |st: &Status| matches!(st, Status::Unsupported(_));
        if refused(&q.status) != refused(&s.status) {
            mismatches.push(format!(
                "{}: qnn {:?}, sim {:?}",
                case.name, q.status, s.status
            ));
        }
        for (who, st) in [("qnn", &q.status), ("sim", &s.status)] {
            if let Status::Failed(why) = st {
                mismatches.push(format!("{}: {who} failed: {why}", case.name));
            }
        }
        unsupported += usize::from(refused(&q.status));
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    assert_eq!(unsupported, 31, "the INT32 pilots and ops HTP refuses");
}

#[test]
fn sim_sa8255_computes_what_qnn_htp_52_computes() {
    let Some((qnn, sim)) = backends() else { return };
    let mut problems = Vec::new();
    let (mut float_cases, mut float_exact) = (0, 0);
    for case in all_cases() {
        let CaseKind::Graph { graph, seed, tiers } = &case.kind else {
            continue;
        };
        if qnn.check_support(graph).is_err() {
            continue;
        }
        let (q, s) = (
            outputs(qnn.as_ref(), graph, *seed),
            outputs(sim.as_ref(), graph, *seed),
        );
        for (i, (((dtype, q), (_, s)), t)) in q.iter().zip(&s).zip(tiers).enumerate() {
            let differing = q.iter().zip(s).filter(|(a, b)| a != b).count();
            if dtype.is_float() {
                float_cases += 1;
                float_exact += usize::from(differing == 0);
                // The case's acceptable bound with f16 eps (both compute f32 as f16).
                let c = t.relaxed().acceptable.check(q, s);
                if !c.passed {
                    problems.push(format!(
                        "{} output {i}: {}",
                        case.name,
                        c.mismatches.join("; ")
                    ));
                }
            } else {
                let worst = q
                    .iter()
                    .zip(s)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f64::max);
                if worst > 1.0 {
                    problems.push(format!("{} output {i}: integers {worst} apart", case.name));
                }
                eprintln!(
                    "{}: {differing} of {} integer outputs differ by one step",
                    case.name,
                    q.len()
                );
            }
        }
    }
    eprintln!("float outputs bit-equal in {float_exact} of {float_cases} cases");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(float_cases >= 10, "the float cases ran");
}
