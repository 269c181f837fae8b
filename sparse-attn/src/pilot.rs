//! The INT8 pilot graph: Q·Kᵀ of one or more fused heads with static quantization scales.

use crate::calibration::{absmax_scale, BucketGrid, Calibration};
use crate::error::{Result, SparseAttnError};
use shadowattn_hal::{
    AttentionInputs, ComputeBackend, DType, Graph, GraphBuilder, HeadsView, HostTensor, KeyBudget,
    NpuBackend, OutType, ProfileEvent, QuantParams, Quantization, ScoreData, ScoreMatrix,
    Selection, TensorDesc, ValueId,
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

/// Where a group pilot sums its heads' softmax probabilities into the group's ranking.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum GroupRanking {
    /// On the CPU: the graph outputs every head's scores, `[heads · q_len, kv_len]` per group.
    Cpu,
    /// On the NPU: the graph outputs one f16 ranking `[q_len, kv_len]` per group.
    Npu {
        /// The softmax's logit multiplier (the attention scale, `1/√head_dim` by default).
        attention_scale: f32,
    },
}

/// What one unit of a pilot launch is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PilotUnit {
    /// One query head against its KV head's keys: scores `[q_len, kv_len]`.
    Head,
    /// One GQA group: its query heads' rows stacked against the group's keys, sent once.
    Group {
        /// Query heads per group.
        heads: usize,
        /// Where the group's ranking is reduced.
        ranking: GroupRanking,
    },
}

impl PilotUnit {
    /// Query heads whose rows one unit stacks.
    pub fn heads(self) -> usize {
        match self {
            PilotUnit::Head => 1,
            PilotUnit::Group { heads, .. } => heads,
        }
    }

    /// The attention scale of an NPU-reduced ranking, `None` when the graph outputs scores.
    pub fn npu_ranking(self) -> Option<f32> {
        match self {
            PilotUnit::Group {
                ranking: GroupRanking::Npu { attention_scale },
                ..
            } => Some(attention_scale),
            _ => None,
        }
    }

    /// What a unit is in the pipeline's plans and timelines.
    pub fn unit_kind(self) -> shadowattn_pipeline::UnitKind {
        match self {
            PilotUnit::Head => shadowattn_pipeline::UnitKind::Head,
            PilotUnit::Group { .. } => shadowattn_pipeline::UnitKind::KvGroup,
        }
    }

    /// Short name in graph names and reports: `h`, `g<heads>` or `g<heads>r` (NPU ranking).
    pub fn label(self) -> String {
        match self {
            PilotUnit::Head => "h".into(),
            PilotUnit::Group {
                heads,
                ranking: GroupRanking::Cpu,
            } => format!("g{heads}"),
            PilotUnit::Group {
                heads,
                ranking: GroupRanking::Npu { .. },
            } => format!("g{heads}r"),
        }
    }
}

/// Shape and static quantization of one pilot graph.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PilotSpec {
    /// Units (query heads, or GQA groups) computed in one launch.
    pub fused: usize,
    /// What a unit is.
    pub unit: PilotUnit,
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
    /// Output form of the Q·Kᵀ scores.
    pub output: PilotOutput,
}

impl PilotSpec {
    /// Name of the graph: shape and scales, so a bank can tell graphs apart.
    pub fn graph_name(&self) -> String {
        let attention = match self.unit.npu_ranking() {
            Some(a) => format!("_a{a:e}"),
            None => String::new(),
        };
        format!(
            "pilot_{}{}_q{}_k{}_d{}_sq{:e}_sk{:e}{attention}",
            self.unit.label(),
            self.fused,
            self.q_len,
            self.kv_len,
            self.head_dim,
            self.q_scale,
            self.k_scale
        )
    }

    /// Query rows of one unit in the graph: its heads' rows stacked.
    pub fn unit_rows(&self) -> usize {
        self.q_len * self.unit.heads()
    }

    /// Builds the graph. Inputs `q` i8 `[1, fused, heads · q_len, d]` and `k` i8
    /// `[1, fused, kv_len, d]`; output `scores` `[1, fused, heads · q_len, kv_len]` (i32 or
    /// requantized i8), or for an NPU-reduced group ranking the inputs `key_mask` f16
    /// `[1, 1, 1, kv_len]` and `head_scale` f16 `[fused, heads, 1, 1]` and the output `ranking`
    /// f16 `[1, fused, q_len, kv_len]`: the scores dequantized, scaled per head, masked,
    /// softmaxed per head and summed over the group.
    pub fn graph(&self) -> Result<Graph> {
        if self.fused == 0 || self.unit.heads() == 0 {
            return Err(SparseAttnError::config(
                "pilot",
                format!(
                    "a launch needs at least one unit of at least one head, got {} units of {}",
                    self.fused,
                    self.unit.heads()
                ),
            ));
        }
        let mut b = GraphBuilder::new(self.graph_name());
        let desc = |rows: usize, scale: f32| {
            TensorDesc::new(DType::I8, [1, self.fused, rows, self.head_dim])
                .with_quant(Quantization::per_tensor(scale, 0))
        };
        let q = b.input("q", desc(self.unit_rows(), self.q_scale))?;
        let k = b.input("k", desc(self.kv_len, self.k_scale))?;
        let out = match self.output {
            PilotOutput::Int32 => OutType::plain(DType::I32),
            PilotOutput::Int8 { .. } => OutType::quantized(
                DType::I8,
                QuantParams::symmetric(self.output.score_scale(self.q_scale, self.k_scale)),
            ),
        };
        let scores = b.matmul("scores", q, k, false, true, out)?;
        match self.unit.npu_ranking() {
            None => b.output(scores)?,
            Some(attention_scale) => {
                let ranking = self.ranking_nodes(&mut b, scores, attention_scale)?;
                b.output(ranking)?
            }
        }
        Ok(b.build()?)
    }

    /// The magnitude subtracted from the logits of keys a row does not see: with the largest
    /// score `S` the output can hold and the attention scale `a`, `2·S + 32/a`, so a masked
    /// key's probability is below `e^-32` of the row's best key (0 in f16). Refused when two
    /// masks (causal and padding) would overflow f16.
    pub fn mask_value(&self) -> Result<f32> {
        let Some(attention_scale) = self.unit.npu_ranking() else {
            return Err(SparseAttnError::config(
                "pilot.unit",
                "only a group pilot that ranks on the NPU masks keys",
            ));
        };
        let PilotOutput::Int8 { .. } = self.output else {
            return Err(SparseAttnError::config(
                "pilot.output",
                "the NPU-reduced ranking needs the INT8-output pilot (its scores' range is known)",
            ));
        };
        if !(attention_scale.is_finite() && attention_scale > 0.0) {
            return Err(SparseAttnError::config(
                "pilot.attention_scale",
                format!("must be finite and positive, got {attention_scale}"),
            ));
        }
        let largest = 127.0 * self.output.score_scale(self.q_scale, self.k_scale);
        let mask = 2.0 * largest + 32.0 / attention_scale;
        if !(mask.is_finite() && 2.0 * mask < f32::from(half::f16::MAX)) {
            return Err(SparseAttnError::config(
                "pilot",
                format!(
                    "its scores reach ±{largest} and need a mask of {mask}, beyond f16's range \
                     for an NPU-reduced ranking; rank on the CPU"
                ),
            ));
        }
        Ok(mask)
    }

    /// The NPU-reduced ranking after the scores: dequantized to f16, reshaped by head and
    /// multiplied by each head's Q-scale factor (the input `head_scale`, at most 1: each head's
    /// Q is quantized with its own bucket's scale, the graph declares its unit's), the causal
    /// mask (a constant for the bank's chunk, rows and keys right-aligned) and the padding mask
    /// (the input `key_mask`) added, softmax per row and head at the attention scale, then
    /// summed over the group's heads by a MatMul with a constant of ones.
    fn ranking_nodes(
        &self,
        b: &mut GraphBuilder,
        scores: ValueId,
        attention_scale: f32,
    ) -> Result<ValueId> {
        let mask = self.mask_value()?;
        let (u, g, q, k) = (self.fused, self.unit.heads(), self.q_len, self.kv_len);
        let f16_desc = |shape: &[usize]| TensorDesc::new(DType::F16, shape.to_vec());
        let key_mask = b.input("key_mask", f16_desc(&[1, 1, 1, k]))?;
        let real = b.dequantize("scores_real", scores, DType::F16)?;
        let stacked = b.reshape("scores_stacked", real, &[u, g, q, k])?;
        let head_scale = b.input("head_scale", f16_desc(&[u, g, 1, 1]))?;
        let by_head = b.mul(
            "scores_by_head",
            stacked,
            head_scale,
            OutType::plain(DType::F16),
        )?;
        let causal = b.constant(
            "causal_mask",
            f16_desc(&[1, 1, q, k]),
            f16_bytes(
                (0..q).flat_map(|i| (0..k).map(move |j| if j + q <= k + i { 0.0 } else { -mask })),
            ),
        )?;
        let both = b.add("mask", causal, key_mask, OutType::plain(DType::F16))?;
        let masked = b.add("scores_masked", by_head, both, OutType::plain(DType::F16))?;
        let probs = b.softmax("probs", masked, 3, attention_scale)?;
        let flat = b.reshape("probs_flat", probs, &[u, g, q * k])?;
        let ones = b.constant(
            "ones",
            f16_desc(&[u, 1, g]),
            f16_bytes(std::iter::repeat_n(1.0, u * g)),
        )?;
        let summed = b.matmul(
            "ranking_sum",
            ones,
            flat,
            false,
            false,
            OutType::plain(DType::F16),
        )?;
        Ok(b.reshape("ranking", summed, &[1, u, q, k])?)
    }

    /// The `key_mask` input of an NPU-reduced ranking for a chunk of `kv_len` keys (placed at
    /// the end of the graph's keys): 0 for the chunk's keys, minus the mask before them.
    pub fn key_mask(&self, kv_len: usize) -> Result<Vec<half::f16>> {
        let mask = self.mask_value()?;
        let pad = self.kv_len.checked_sub(kv_len).ok_or_else(|| {
            SparseAttnError::config(
                "kv_len",
                format!("{kv_len} keys exceed the graph's {}", self.kv_len),
            )
        })?;
        Ok((0..self.kv_len)
            .map(|j| half::f16::from_f32(if j < pad { -mask } else { 0.0 }))
            .collect())
    }
}

/// Little-endian f16 bytes of `values`, as a constant tensor holds them.
fn f16_bytes(values: impl Iterator<Item = f32>) -> Vec<u8> {
    values
        .flat_map(|v| half::f16::from_f32(v).to_le_bytes())
        .collect()
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
            fused: 1,
            unit: PilotUnit::Head,
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
            fused: 2,
            unit: PilotUnit::Head,
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
        spec.fused = 0;
        assert!(spec.graph().is_err());
    }
}
