//! Running cases against a backend: note what the backend declares unsupported, fail anything
//! else that does not match the golden reference within its tolerance, and prove each
//! tolerance rejects wrong outputs ([`crate::mutation`]).

use crate::cases::{Case, CaseKind, Group};
use crate::mutation::{self, MutationRecord, Reference};
pub use crate::outcome::{CaseResult, Status};
use crate::outcome::{Suite, Verdict};
use crate::seeded::seeded_inputs;
use crate::tolerance::{Comparison, Tiers, Tolerance};
use shadowattn_cpu::reference::graph::{decode, run};
use shadowattn_hal::{
    DType, Graph, GraphBuilder, HalError, HostTensor, NpuBackend, Quantization, TensorDesc,
};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

/// A case's outcome: its status, the comparisons and the mutation records.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) status: Status,
    pub(crate) comparisons: Vec<Comparison>,
    pub(crate) mutations: Vec<MutationRecord>,
}

impl Outcome {
    pub(crate) fn of(status: Status) -> Self {
        Outcome {
            status,
            comparisons: vec![],
            mutations: vec![],
        }
    }

    pub(crate) fn failed(why: impl Into<String>) -> Self {
        Self::of(Status::Failed(why.into()))
    }
}

/// One output to judge: its tiers, the golden values and how a backend writes them.
pub(crate) struct Judged {
    pub(crate) tiers: Tiers,
    pub(crate) expected: Vec<f64>,
    pub(crate) dtype: DType,
    pub(crate) row_len: usize,
}

impl Judged {
    fn reference(&self) -> Reference<'_> {
        Reference {
            values: &self.expected,
            dtype: self.dtype,
            row_len: self.row_len,
        }
    }
}

/// The mutation records of every output.
pub(crate) fn mutations_of(outputs: &[Judged]) -> Vec<MutationRecord> {
    outputs
        .iter()
        .enumerate()
        .flat_map(|(i, j)| mutation::check(&j.tiers.acceptable, i, &j.reference()))
        .collect()
}

/// Compares each actual output with its judged reference; mutation records included.
pub(crate) fn compare(outputs: &[Judged], actual: &[Vec<f64>]) -> Outcome {
    let mut comparisons = Vec::new();
    let (mut failures, mut warnings) = (Vec::new(), Vec::new());
    for (i, (j, got)) in outputs.iter().zip(actual).enumerate() {
        let c = j.tiers.check(got, &j.expected);
        if !c.passed {
            failures.push(format!(
                "output {i} outside {:?}: {}",
                j.tiers.acceptable,
                c.mismatches.join("; ")
            ));
        } else if !c.strict {
            warnings.push(format!(
                "output {i} within {:?} but not the strict {:?} (max |diff| {:.3e}, max rel {:.3e})",
                j.tiers.acceptable, j.tiers.strict, c.max_abs, c.max_rel
            ));
        }
        comparisons.push(c);
    }
    let status = if !failures.is_empty() {
        Status::Failed(failures.join(" | "))
    } else if !warnings.is_empty() {
        Status::PassedWithWarning(warnings.join(" | "))
    } else {
        Status::Passed
    };
    Outcome {
        status,
        comparisons,
        mutations: mutations_of(outputs),
    }
}

/// Wraps an outcome (or a panic) into a result, every case expected to pass.
pub(crate) fn result_of(
    (suite, case, group): (Suite, &str, Group),
    backend: &str,
    started: Instant,
    outcome: std::thread::Result<Outcome>,
) -> CaseResult {
    let outcome = outcome.unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Outcome::failed(format!("panicked: {msg}"))
    });
    let mut r = CaseResult {
        case: case.to_string(),
        group,
        suite,
        backend: backend.to_string(),
        status: outcome.status,
        duration_ms: started.elapsed().as_secs_f64() * 1e3,
        comparisons: outcome.comparisons,
        mutations: outcome.mutations,
        verdict: Verdict::Failed,
        verdict_reason: None,
    };
    let (verdict, reason) = crate::expectations::verdict(&r, crate::expectations::Expected::Pass);
    r.verdict = verdict;
    r.verdict_reason = reason;
    r
}

fn run_graph(backend: &dyn NpuBackend, graph: &Graph, seed: u64, tiers: &[Tiers]) -> Outcome {
    let inputs = seeded_inputs(graph, seed);
    let views: Vec<_> = inputs.iter().map(|t| t.view()).collect();
    let expected = match run(graph, &views) {
        Ok(e) => e,
        Err(e) => return Outcome::failed(format!("the reference failed: {e}")),
    };
    // Backends that compute f32 as f16 are judged with f16 eps on f32 outputs.
    let relaxed = backend.capabilities().relaxed_f32;
    let judged: Vec<Judged> = expected
        .iter()
        .zip(tiers)
        .map(|(want, t)| {
            let desc = want.desc();
            Judged {
                tiers: if relaxed && desc.dtype == DType::F32 {
                    t.relaxed()
                } else {
                    *t
                },
                expected: decode(want.bytes(), desc.dtype),
                dtype: desc.dtype,
                row_len: desc.shape.last().copied().unwrap_or(1),
            }
        })
        .collect();
    let fail = |why: String| Outcome {
        status: Status::Failed(why),
        comparisons: vec![],
        mutations: mutations_of(&judged),
    };
    match backend.check_support(graph) {
        Err(HalError::Unsupported { node, detail, .. }) => {
            return Outcome {
                status: Status::Unsupported(format!(
                    "declared unsupported: node `{node}`: {detail}"
                )),
                comparisons: vec![],
                mutations: mutations_of(&judged),
            }
        }
        Err(e) => return fail(format!("check_support failed: {e}")),
        Ok(()) => {}
    }
    let mut compiled = match backend.compile(graph) {
        Ok(c) => c,
        Err(e) => return fail(format!("declared supported but compile failed: {e}")),
    };
    let mut outputs: Vec<HostTensor> = graph
        .output_descs()
        .map(|d| HostTensor::zeros(d.clone()).expect("valid"))
        .collect();
    {
        let mut out_views: Vec<_> = outputs.iter_mut().map(|t| t.view_mut()).collect();
        if let Err(e) = compiled.execute(&views, &mut out_views) {
            return fail(format!("execute failed: {e}"));
        }
    }
    let actual: Vec<Vec<f64>> = outputs
        .iter()
        .map(|t| decode(t.bytes(), t.desc().dtype))
        .collect();
    compare(&judged, &actual)
}

/// A small graph the backend can build, for behaviour checks.
fn supported_probe(backend: &dyn NpuBackend) -> Option<Graph> {
    crate::cases::all_cases()
        .into_iter()
        .find_map(|c| match c.kind {
            CaseKind::Graph { graph, .. } if backend.check_support(&graph).is_ok() => Some(graph),
            _ => None,
        })
}

fn buffer_mismatch(backend: &dyn NpuBackend) -> Status {
    let Some(graph) = supported_probe(backend) else {
        return Status::Unsupported("the backend declares no case graph supported".into());
    };
    let mut compiled = match backend.compile(&graph) {
        Ok(c) => c,
        Err(e) => return Status::Failed(format!("compile failed: {e}")),
    };
    let inputs = seeded_inputs(&graph, 1);
    let views: Vec<_> = inputs.iter().map(|t| t.view()).collect();
    let mut wrong: Vec<HostTensor> = graph
        .output_descs()
        .map(|d| {
            let mut shape = d.shape.clone();
            shape[0] += 1;
            HostTensor::zeros(TensorDesc { shape, ..d.clone() }).expect("valid")
        })
        .collect();
    let mut out_views: Vec<_> = wrong.iter_mut().map(|t| t.view_mut()).collect();
    match compiled.execute(&views, &mut out_views) {
        Err(HalError::BufferMismatch { .. }) => Status::Passed,
        Err(e) => Status::Failed(format!("expected a buffer-mismatch error, got: {e}")),
        Ok(_) => Status::Failed("a wrongly sized output buffer was accepted".into()),
    }
}

fn refuses_unsupported(backend: &dyn NpuBackend) -> Outcome {
    let mut b = GraphBuilder::new("per_axis_dequantize");
    let x = b
        .input(
            "x",
            TensorDesc::new(DType::I8, [3, 4]).with_quant(Quantization::PerAxis {
                axis: 0,
                scales: vec![0.1, 0.2, 0.3],
                zero_points: vec![0; 3],
            }),
        )
        .expect("valid");
    let y = b.dequantize("dq", x, DType::F32).expect("valid");
    b.output(y).expect("valid");
    let graph = b.build().expect("valid");
    match backend.check_support(&graph) {
        Ok(()) => run_graph(
            backend,
            &graph,
            3,
            &[Tiers::single(Tolerance::Ulp {
                ulps: 5.0,
                dtype: DType::F32,
            })],
        ),
        Err(HalError::Unsupported { .. }) => match backend.compile(&graph) {
            Err(HalError::Unsupported { .. }) => Outcome::of(Status::Passed),
            Err(e) => Outcome::failed(format!("compile refused it with an untyped reason: {e}")),
            Ok(_) => Outcome::failed("declared unsupported, yet compile accepted it"),
        },
        Err(e) => Outcome::failed(format!("check_support failed: {e}")),
    }
}

/// Runs one case on `backend`; a panic inside the backend is a failure, not an abort.
pub fn run_case(backend: &dyn NpuBackend, case: &Case) -> CaseResult {
    let started = Instant::now();
    let outcome = catch_unwind(AssertUnwindSafe(|| match &case.kind {
        CaseKind::Graph { graph, seed, tiers } => run_graph(backend, graph, *seed, tiers),
        CaseKind::EndToEnd { ratio } => Outcome::of(crate::layer::end_to_end(backend, *ratio)),
        CaseKind::FusedUnits { ratio, pilot } => {
            Outcome::of(crate::layer::fused_units(backend, *ratio, *pilot))
        }
        CaseKind::BufferMismatch => Outcome::of(buffer_mismatch(backend)),
        CaseKind::RefusesUnsupported => refuses_unsupported(backend),
    }));
    result_of(
        (Suite::Npu, &case.name, case.group),
        backend.name(),
        started,
        outcome,
    )
}
