//! The INT8 pilot graph: Q·Kᵀ of one or more fused heads with static quantization scales.

use crate::calibration::{absmax_scale, BucketGrid, Calibration};
use crate::error::{Result, SparseAttnError};
use shadowattn_hal::{
    AttentionInputs, ComputeBackend, DType, Graph, GraphBuilder, HeadsView, HostTensor, KeyBudget,
    NpuBackend, OutType, ProfileEvent, QuantParams, Quantization, ScoreData, ScoreMatrix,
    Selection, TensorDesc,
};

/// One query head's actual quantization scales in a chunk, and the bucket nearest to them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HeadScales {
    /// Absmax scale of the head's queries.
    pub q_scale: f32,
    /// Absmax scale of its KV head's keys.
    pub k_scale: f32,
    /// The grid bucket nearest to (`q_scale`, `k_scale`): the static scales its pilot uses.
    pub bucket: usize,
}

/// Every query head's scales and bucket in a chunk (K scales measured once per KV head).
pub fn head_scales(grid: &BucketGrid, inputs: &AttentionInputs<'_>) -> Vec<HeadScales> {
    let s = inputs.shape();
    let k_scales: Vec<f32> = (0..s.kv_heads)
        .map(|g| absmax_scale(inputs.k_head(g)))
        .collect();
    (0..s.q_heads)
        .map(|h| {
            let q_scale = absmax_scale(inputs.q_head(h));
            let k_scale = k_scales[s.kv_head_of(h)];
            HeadScales {
                q_scale,
                k_scale,
                bucket: grid.nearest(q_scale, k_scale),
            }
        })
        .collect()
}

/// `inputs` with each KV head's mean key subtracted (the keys stored in `keys`): what a pilot
/// that centers keys quantizes ([`crate::calibration::center_keys`]).
pub fn with_centered_keys<'a>(
    inputs: &AttentionInputs<'a>,
    keys: &'a mut Vec<f32>,
) -> Result<AttentionInputs<'a>> {
    let s = inputs.shape();
    *keys = crate::calibration::center_keys(inputs.k(), s.kv_len, s.head_dim);
    Ok(AttentionInputs::new(inputs.q(), keys, inputs.v(), s)?)
}

/// The INT8 queries of query head `h` with the static scale `scale`, `[q_len, head_dim]`.
pub fn quantize_queries(
    compute: &dyn ComputeBackend,
    inputs: &AttentionInputs<'_>,
    h: usize,
    scale: f32,
) -> Result<Vec<i8>> {
    let s = inputs.shape();
    let view = HeadsView::new(inputs.q_head(h), 1, s.q_len, s.head_dim)?;
    Ok(compute.quantize_heads(view, Some(&[scale]))?.into_data())
}

/// The INT8 keys of KV head `g` with the static scale `scale`, `[kv_len, head_dim]`.
pub fn quantize_keys(
    compute: &dyn ComputeBackend,
    inputs: &AttentionInputs<'_>,
    g: usize,
    scale: f32,
) -> Result<Vec<i8>> {
    let s = inputs.shape();
    let view = HeadsView::new(inputs.k_head(g), 1, s.kv_len, s.head_dim)?;
    Ok(compute.quantize_heads(view, Some(&[scale]))?.into_data())
}

/// What the pilot graph outputs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PilotOutput {
    /// The exact INT32 accumulators.
    Int32,
    /// Scores requantized to INT8. The output scale of a bucket is
    /// `q_scale · k_scale · acc_range / 127`: an INT32 accumulator of ±`acc_range` maps to ±127.
    /// Quantizing Q and K with a bucket's scales normalises their integer range, so one
    /// accumulator range serves every bucket and head (a single real-valued scale would clip
    /// large-scale heads and flatten small-scale ones).
    Int8 {
        /// Accumulator magnitude mapped to ±127, in integer units.
        acc_range: f32,
    },
}

impl PilotOutput {
    /// The INT8 output of `calibration`'s pilot: [`PilotOutput::Int8`] with its
    /// [`Calibration::pilot_acc_range`], an error naming the fix when the file has none.
    pub fn int8_of(calibration: &Calibration) -> Result<Self> {
        match calibration.pilot_acc_range {
            Some(acc_range) => Ok(PilotOutput::Int8 { acc_range }),
            None => Err(SparseAttnError::calibration(
                "calibration.pilot_acc_range",
                format!(
                    "the file (version {}) has no accumulator range for an INT8-output pilot; \
                     calibrate again with this build",
                    calibration.version
                ),
            )),
        }
    }

    /// The real value of one output step of a bucket with scales `q_scale`, `k_scale`: the
    /// accumulator's scale for INT32, the requantized scale for INT8.
    pub fn score_scale(self, q_scale: f32, k_scale: f32) -> f32 {
        match self {
            PilotOutput::Int32 => q_scale * k_scale,
            PilotOutput::Int8 { acc_range } => q_scale * k_scale * acc_range / 127.0,
        }
    }
}

/// Shape and static quantization of one pilot graph.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PilotSpec {
    /// Heads computed in one launch.
    pub fused_heads: usize,
    /// Query rows per head.
    pub q_len: usize,
    /// Keys per head.
    pub kv_len: usize,
    /// Head dimension.
    pub head_dim: usize,
    /// Static scale of the INT8 queries.
    pub q_scale: f32,
    /// Static scale of the INT8 keys.
    pub k_scale: f32,
    /// Output form.
    pub output: PilotOutput,
}

impl PilotSpec {
    /// Name of the graph: shape and scales, so a bank can tell graphs apart.
    pub fn graph_name(&self) -> String {
        format!(
            "pilot_h{}_q{}_k{}_d{}_sq{:e}_sk{:e}",
            self.fused_heads, self.q_len, self.kv_len, self.head_dim, self.q_scale, self.k_scale
        )
    }

    /// Builds the graph: inputs `q` i8 `[1, H, q_len, d]` and `k` i8 `[1, H, kv_len, d]`,
    /// output `scores` `[1, H, q_len, kv_len]` (i32 or requantized i8).
    pub fn graph(&self) -> Result<Graph> {
        if self.fused_heads == 0 {
            return Err(SparseAttnError::config("fused_heads", "must be at least 1"));
        }
        let mut b = GraphBuilder::new(self.graph_name());
        let desc = |rows: usize, scale: f32| {
            TensorDesc::new(DType::I8, [1, self.fused_heads, rows, self.head_dim])
                .with_quant(Quantization::per_tensor(scale, 0))
        };
        let q = b.input("q", desc(self.q_len, self.q_scale))?;
        let k = b.input("k", desc(self.kv_len, self.k_scale))?;
        let out = match self.output {
            PilotOutput::Int32 => OutType::plain(DType::I32),
            PilotOutput::Int8 { .. } => OutType::quantized(
                DType::I8,
                QuantParams::symmetric(self.output.score_scale(self.q_scale, self.k_scale)),
            ),
        };
        let scores = b.matmul("scores", q, k, false, true, out)?;
        b.output(scores)?;
        Ok(b.build()?)
    }
}

/// The accumulator range for [`PilotOutput::Int8`]: the largest |q·k| of a sample chunk in
/// integer units (each head's score divided by its absmax Q and K scales), so requantized scores
/// use the whole INT8 range without clipping on data like the sample.
pub fn int8_accumulator_range(sample: AttentionInputs<'_>) -> Result<f32> {
    let s = sample.shape();
    let mut max = 0.0f32;
    for h in 0..s.q_heads {
        let q_scale = absmax_scale(sample.q_head(h));
        let k_scale = absmax_scale(sample.k_head(s.kv_head_of(h)));
        let scores = sample.exact_scores(h)?;
        for i in 0..s.q_len {
            let row = &scores[i * s.kv_len..i * s.kv_len + s.valid_keys(i)];
            max = row
                .iter()
                .fold(max, |m, v| m.max(v.abs() / (q_scale * k_scale)));
        }
    }
    if !(max.is_finite() && max > 0.0) {
        return Err(SparseAttnError::config(
            "sample",
            format!("its largest score is {max}"),
        ));
    }
    Ok(max)
}

/// Selected keys and the profiling events of the pilot that chose them.
#[derive(Clone, Debug)]
pub struct PilotSelection {
    /// One selection per query head.
    pub selections: Vec<Selection>,
    /// Compile and launch events of the NPU graphs.
    pub events: Vec<ProfileEvent>,
}

/// Selects keys with an INT8 pilot that uses each head's own absmax scales: quantize Q per query
/// head and K per KV head on `compute`, run one single-head pilot graph per query head on `npu`
/// (compiled for that head's scales), then top-k over the INT32 scores on `compute`.
///
/// This is the unbucketed pilot: one compile per head. It is exact about what the pilot ranks,
/// and is the baseline the scale-bucketed graph bank is compared against.
pub fn select_with_per_head_scales(
    npu: &dyn NpuBackend,
    compute: &dyn ComputeBackend,
    inputs: AttentionInputs<'_>,
    budget: KeyBudget,
) -> Result<PilotSelection> {
    let s = inputs.shape();
    budget.validate()?;
    let q8 = compute.quantize_heads(
        HeadsView::new(inputs.q(), s.q_heads, s.q_len, s.head_dim)?,
        None,
    )?;
    let k8 = compute.quantize_heads(
        HeadsView::new(inputs.k(), s.kv_heads, s.kv_len, s.head_dim)?,
        None,
    )?;
    let mut selections = Vec::with_capacity(s.q_heads);
    let mut events = Vec::new();
    for h in 0..s.q_heads {
        let kv = s.kv_head_of(h);
        let spec = PilotSpec {
            fused_heads: 1,
            q_len: s.q_len,
            kv_len: s.kv_len,
            head_dim: s.head_dim,
            q_scale: q8.scales()[h],
            k_scale: k8.scales()[kv],
            output: PilotOutput::Int32,
        };
        let graph = spec.graph()?;
        let mut compiled = npu.compile(&graph)?;
        events.extend_from_slice(compiled.compile_events());
        let mut descs = graph.input_descs();
        let (qd, kd) = (descs.next().expect("q"), descs.next().expect("k"));
        let q_in = HostTensor::from_slice(qd.clone(), q8.head(h))?;
        let k_in = HostTensor::from_slice(kd.clone(), k8.head(kv))?;
        let out_desc = graph.output_descs().next().expect("scores").clone();
        let mut scores = HostTensor::zeros(out_desc)?;
        events.extend(compiled.execute(&[q_in.view(), k_in.view()], &mut [scores.view_mut()])?);
        let matrix = ScoreMatrix::for_chunk(ScoreData::I32(scores.as_slice::<i32>()?), &s)?;
        selections.push(compute.topk(matrix, budget)?);
    }
    Ok(PilotSelection { selections, events })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calibration::{LayerSample, ModelShape, RatioConfig};

    #[test]
    fn a_calibration_gives_its_int8_output_or_names_the_fix() {
        let model = ModelShape {
            name: "m".into(),
            layers: 1,
            q_heads: 1,
            kv_heads: 1,
            head_dim: 2,
        };
        let (q, k) = (vec![1.0f32, 0.5, 0.25, 1.0], vec![0.5f32, -1.0, 1.0, 0.0]);
        let sample = LayerSample {
            layer: 0,
            q: &q,
            k: &k,
            rows: 2,
        };
        let mut c = Calibration::calibrate(
            model,
            &[sample],
            &[vec![1.0]],
            RatioConfig::default(),
            1,
            0.5,
        )
        .unwrap();
        let range = c.pilot_acc_range.unwrap();
        assert_eq!(
            PilotOutput::int8_of(&c).unwrap(),
            PilotOutput::Int8 { acc_range: range }
        );
        c.pilot_acc_range = None;
        let e = PilotOutput::int8_of(&c).unwrap_err();
        assert!(e.to_string().contains("pilot_acc_range"), "{e}");
    }

    #[test]
    fn builds_both_output_forms_and_rejects_bad_scales() {
        let mut spec = PilotSpec {
            fused_heads: 2,
            q_len: 4,
            kv_len: 8,
            head_dim: 16,
            q_scale: 0.1,
            k_scale: 0.2,
            output: PilotOutput::Int32,
        };
        let g = spec.graph().unwrap();
        assert_eq!(g.output_descs().next().unwrap().shape, vec![1, 2, 4, 8]);
        spec.output = PilotOutput::Int8 { acc_range: 20000.0 };
        assert_eq!(
            spec.graph().unwrap().output_descs().next().unwrap().dtype,
            DType::I8
        );
        spec.q_scale = f32::NAN;
        assert!(spec.graph().is_err());
        spec.q_scale = 0.1;
        spec.fused_heads = 0;
        assert!(spec.graph().is_err());
    }
}
