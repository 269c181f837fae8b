//! NPU-side attention baselines, priced on the same SoC profile as shadowAttn: what a user would
//! otherwise run on the NPU for one attention chunk of a layer.
//!
//! # NPU-Full INT8 ([`npu_full_int8_graph`], [`npu_full_int8`])
//!
//! The paper's baseline "N" (Table 3): full attention as one static QNN-style graph with static
//! per-tensor quantization, priced by [`graph_cost`] so the same graph can later be compared with
//! Qualcomm's own estimate. Nodes, all heads of the chunk fused into one launch:
//!
//! 1. `scores = Q·Kᵀ`, INT8 × INT8 requantized to INT8 (HTP has no INT32 MatMul output);
//! 2. `Dequantize` to f16 (the IR's Softmax takes floats only);
//! 3. causal chunks: `Add` of an f16 mask input `[1, 1, rows, kv_len]` (0 or −∞), broadcast
//!    over heads, as llm.npu-style graphs feed the mask;
//! 4. `Softmax` over keys with β = 1/√d;
//! 5. `Quantize` the probabilities to u8 (scale 1/255, zero point 0);
//! 6. `P·V`, u8 × u8 (V asymmetric, zero point 128) requantized to a u8 output: HTP refuses
//!    a u8 × i8 MatMul (`backendValidateOpConfig`, 0xc26, measured with `shadowattn
//!    qnn-estimates --attention`).
//!
//! GQA: the query heads of one KV group share its K and V, so [`npu_full_int8`] stacks their rows
//! (`[1, kv_heads, group·q_len, d]`, as ggml-hexagon's flash attention does with `G·Br`) instead of
//! repeating K and V per query head. The scales are nominal: they do not change the cost.
//!
//! # NPU FP16 flash attention ([`npu_fp16_flash`])
//!
//! FP16 flash attention with the products on the matrix unit and the exponentials on the vector
//! units, as llama.cpp's Hexagon backend (`ggml/src/ggml-hexagon/htp/hmx-flash-attn-ops.c`) runs
//! prefill since ggml-org/llama.cpp PR #22347 ("hexagon: hmx flash attention"; reworked in
//! #25085, head dims padded to the tile in #26539). What this model takes from that design:
//!
//! - **GQA-merged blocks**: one pass per KV head; its `G` query heads are stacked, so a query
//!   block of `Br` rows is `g_br = align_up(G·Br, tile_m)` matrix rows sharing one K/V stream.
//! - **Block sizes from the on-chip budget** ([`flash_blocks`]): Q, two O buffers (ping-pong),
//!   the diagonal rescale matrix `D` (`g_br²`), K and V double-buffered DMA blocks plus their
//!   tile-layout copies (`3·Bc·(DK+DV)`), S and P (`2·g_br·Bc`) and the mask rows (`Br·Bc`), all
//!   f16, must fit; `Bc` is a multiple of two tile columns and at most `kv_len/3` so at least
//!   three KV blocks pipeline; among the fitting `(Br, Bc)` the one minimising
//!   `q_blocks·(C_Q + kv_blocks·C_ITER)` is taken (ties: the larger `Br·Bc`), with the PR's
//!   planner weights `C_Q` = [`Q_BLOCK_FIXED_CYCLES`] and `C_ITER` = [`KV_ITER_FIXED_CYCLES`].
//! - **Per KV block** (K, V streamed in blocks of `Bc` keys, online softmax): the vector units
//!   convert K and V to tile layout; the matrix unit computes `S = Q·Kᵀ`; the vector units run the
//!   softmax (row max, exp, row sum, the mask) and build `D = diag(exp(m_old − m_new))`; the
//!   matrix unit updates `O = D·O + P·V` (the rescale is one extra tile per output tile).
//!   Pipelined (≥ 3 blocks and ≥ 2 vector units) as in the PR: K-convert(b) ‖ O-update(b−1),
//!   then `S`(b) ‖ V-convert(b), then softmax(b) with the matrix unit idle; otherwise serial.
//! - **Per query block**: load and convert Q, a last O-update (pipelined), `O = diag(1/l)·O`
//!   (one tile per output tile), store O. Every KV block is visited: ggml passes the causal mask
//!   as a tensor, and the kernel does not skip fully masked blocks.
//! - Types as ggml runs it: Q and the output f32 (converted on chip), K and V f16.
//!
//! The model, each term from the profile (`[npu]`, `[npu.matrix.fp16]`, `[npu.vector]`):
//!
//! - matrix cycles = tiles · `fp16.cycles_per_tile`, tiles counted per `[tile_m, tile_k]·[tile_k,
//!   tile_n]` micro-op with padding to whole tiles (as [`crate::npu::cost`]);
//! - vector cycles of a phase = `elements · ops / (units · lanes)`, lanes = `width_bits/16` (f16),
//!   ops = `softmax_ops` for the softmax and `D`, `elementwise_ops` for the layout conversions and
//!   the mask;
//! - DMA cycles = bytes / `dma_bytes_per_cycle`; the next block's K/V (and mask rows) load during
//!   this block's compute (double buffering), so a block costs `max(compute, next block's DMA)`;
//! - fixed: [`Q_BLOCK_FIXED_CYCLES`] per query block, [`KV_ITER_FIXED_CYCLES`] per KV block
//!   (queue push/pop, barriers), `fixed_cycles` per execution;
//! - launch: one warm launch and host I/O of Q, K, V, the mask and O on the profile's graph
//!   launch path, as every launch in [`crate::npu::cost`] (reported apart in [`FlashCost`]);
//!   ggml-hexagon queues ops through shared buffers, the `qnn-shared` path's costs.

use crate::error::{check_attention_sizes, Result, SimError};
use crate::npu::cost::{graph_cost, GraphCost};
use crate::npu::profile::{count, real, SocProfile};
use shadowattn_hal::{DType, Graph, GraphBuilder, OutType, QuantParams, Quantization, TensorDesc};

/// Fixed cycles per query block of the flash kernel (Q load, epilogue, O store bookkeeping):
/// the `c_q_fixed` weight of ggml-hexagon's block-size planner (PR #22347), taken as cycles.
pub const Q_BLOCK_FIXED_CYCLES: f64 = 1400.0;

/// Fixed cycles per KV block of the flash kernel (matrix-queue push/pop, DMA pop, barriers):
/// the `c_iter_fixed` weight of ggml-hexagon's block-size planner (PR #22347), taken as cycles.
pub const KV_ITER_FIXED_CYCLES: f64 = 200.0;

/// KV blocks the flash kernel needs to overlap its phases (ggml-hexagon's `FA_MIN_KV_BLOCKS`).
pub const MIN_PIPELINED_KV_BLOCKS: usize = 3;

/// One attention chunk of a layer: `q_len` query rows of `q_heads` heads against `kv_len` keys
/// of `kv_heads` heads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionChunk {
    /// Query heads.
    pub q_heads: usize,
    /// Key/value heads; divides `q_heads`.
    pub kv_heads: usize,
    /// Query rows of the chunk.
    pub q_len: usize,
    /// Keys (prefix plus chunk).
    pub kv_len: usize,
    /// Dimension of each head.
    pub head_dim: usize,
    /// Whether the chunk's rows are the last `q_len` positions under a causal mask.
    pub causal: bool,
}

impl AttentionChunk {
    /// Checks that the numbers describe a chunk the baselines can price.
    pub fn validate(&self) -> Result<()> {
        check_attention_sizes(
            &[
                ("q_heads", self.q_heads),
                ("kv_heads", self.kv_heads),
                ("q_len", self.q_len),
                ("kv_len", self.kv_len),
                ("head_dim", self.head_dim),
            ],
            self.q_heads,
            self.kv_heads,
        )?;
        if self.causal && self.q_len > self.kv_len {
            return Err(SimError::Shape(format!(
                "a causal chunk of {} query rows needs at least as many keys, got {}",
                self.q_len, self.kv_len
            )));
        }
        Ok(())
    }

    /// Query heads per KV head.
    pub fn group(&self) -> usize {
        self.q_heads / self.kv_heads.max(1)
    }
}

/// Nominal per-tensor scales of the INT8 graph (they do not change its cost).
const QKV_SCALE: f32 = 0.05;
const SCORE_SCALE: f32 = 0.25;

/// NPU-Full INT8 attention as one static graph of `heads` fused heads: Q `[1, heads, rows, d]`,
/// K `[1, heads, kv_len, d]` INT8 and V u8 per tensor, output `[1, heads, rows, d]` u8 (the module
/// docs list the nodes); `causal` adds an f16 mask input `[1, 1, rows, kv_len]`.
pub fn npu_full_int8_graph(
    heads: usize,
    rows: usize,
    kv_len: usize,
    head_dim: usize,
    causal: bool,
) -> Result<Graph> {
    let mut b = GraphBuilder::new(format!(
        "npu_full_int8_h{heads}_q{rows}_k{kv_len}_d{head_dim}{}",
        if causal { "_causal" } else { "" }
    ));
    let int8 = |r: usize| {
        TensorDesc::new(DType::I8, [1, heads, r, head_dim])
            .with_quant(Quantization::per_tensor(QKV_SCALE, 0))
    };
    let q = b.input("q", int8(rows))?;
    let k = b.input("k", int8(kv_len))?;
    // HTP's MatMul takes no u8 × i8 mix (backendValidateOpConfig: 0xc26): V is asymmetric u8
    // like the probabilities.
    let v = b.input(
        "v",
        TensorDesc::new(DType::U8, [1, heads, kv_len, head_dim])
            .with_quant(Quantization::per_tensor(QKV_SCALE, 128)),
    )?;
    let scores = b.matmul(
        "scores",
        q,
        k,
        false,
        true,
        OutType::quantized(DType::I8, QuantParams::symmetric(SCORE_SCALE)),
    )?;
    let mut logits = b.dequantize("scores_f16", scores, DType::F16)?;
    if causal {
        let mask = b.input("mask", TensorDesc::new(DType::F16, [1, 1, rows, kv_len]))?;
        logits = b.add("masked", logits, mask, OutType::plain(DType::F16))?;
    }
    let probs = b.softmax("probs", logits, 3, 1.0 / (head_dim as f32).sqrt())?;
    let probs_u8 = b.quantize(
        "probs_u8",
        probs,
        OutType::quantized(DType::U8, QuantParams::new(1.0 / 255.0, 0)),
    )?;
    let out = b.matmul(
        "out",
        probs_u8,
        v,
        false,
        false,
        OutType::quantized(DType::U8, QuantParams::new(QKV_SCALE, 128)),
    )?;
    b.output(out)?;
    Ok(b.build()?)
}

/// The NPU-Full INT8 graph of `chunk` (each KV group's query heads stacked) priced on `soc`; its
/// `launch_ns(false)` is the chunk's time.
pub fn npu_full_int8(soc: &SocProfile, chunk: &AttentionChunk) -> Result<GraphCost> {
    chunk.validate()?;
    let graph = npu_full_int8_graph(
        chunk.kv_heads,
        chunk.group() * chunk.q_len,
        chunk.kv_len,
        chunk.head_dim,
        chunk.causal,
    )?;
    Ok(graph_cost(soc, &graph))
}

/// The flash kernel's block sizes for a chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlashBlocks {
    /// Query rows per block, per head.
    pub br: usize,
    /// Keys per K/V block.
    pub bc: usize,
    /// Matrix rows of a query block: `G·Br` padded to the tile.
    pub g_br: usize,
    /// On-chip bytes the blocks take.
    pub onchip_bytes: u64,
}

/// Bytes of one f16 element.
const F16: usize = 2;
/// Bytes of one f32 element (ggml's Q and output).
const F32: usize = 4;

fn align_up(x: usize, a: usize) -> usize {
    x.div_ceil(a) * a
}

fn align_down(x: usize, a: usize) -> usize {
    x / a * a
}

/// On-chip bytes of the flash kernel's buffers for `(br, bc)`.
fn flash_onchip_bytes(chunk: &AttentionChunk, tile_m: usize, br: usize, bc: usize) -> usize {
    let d = chunk.head_dim;
    let g_br = align_up(chunk.group() * br, tile_m);
    // Q, O ×2, D; K and V ×2 (DMA) + ×1 (tile layout); S and P; the mask rows.
    g_br * 3 * d * F16
        + g_br * g_br * F16
        + 3 * bc * 2 * d * F16
        + 2 * g_br * bc * F16
        + br * bc * F16
}

/// The flash kernel's block sizes for `chunk` on `soc` (the search described in the module docs),
/// or an error when no block fits the usable on-chip memory.
pub fn flash_blocks(soc: &SocProfile, chunk: &AttentionChunk) -> Result<FlashBlocks> {
    chunk.validate()?;
    let tile = &soc.npu.matrix.fp16;
    let (tm, tn) = (count(&tile.m) as usize, count(&tile.n) as usize);
    let units = count(&soc.npu.vector.units) as usize;
    let budget = soc.usable_onchip_bytes() as usize;
    let (q_len, kv_len) = (chunk.q_len, chunk.kv_len);
    let br_unit = tm.div_ceil(chunk.group());
    let bc_unit = 2 * tn;
    let bc_limit = if kv_len >= MIN_PIPELINED_KV_BLOCKS * bc_unit && units >= 2 {
        align_down(kv_len / MIN_PIPELINED_KV_BLOCKS, bc_unit)
    } else {
        align_down(kv_len, bc_unit).max(bc_unit)
    };
    let steps = (q_len / br_unit).max(1);
    let mut best: Option<(f64, usize, FlashBlocks)> = None;
    for br in (1..=steps).rev().map(|i| i * br_unit) {
        let g_br = align_up(chunk.group() * br, tm);
        let fixed = flash_onchip_bytes(chunk, tm, br, 0);
        if fixed >= budget {
            continue;
        }
        let per_bc = flash_onchip_bytes(chunk, tm, br, 1) - fixed;
        let bc = align_down((budget - fixed) / per_bc, bc_unit).min(bc_limit);
        if bc < bc_unit {
            continue;
        }
        let cost = q_len.div_ceil(br) as f64
            * (Q_BLOCK_FIXED_CYCLES + kv_len.div_ceil(bc) as f64 * KV_ITER_FIXED_CYCLES);
        let better = match &best {
            None => true,
            Some((c, area, _)) => cost < *c || (cost == *c && br * bc > *area),
        };
        if better {
            let onchip_bytes = flash_onchip_bytes(chunk, tm, br, bc) as u64;
            best = Some((
                cost,
                br * bc,
                FlashBlocks {
                    br,
                    bc,
                    g_br,
                    onchip_bytes,
                },
            ));
        }
    }
    best.map(|(_, _, b)| b).ok_or_else(|| {
        SimError::Shape(format!(
            "no flash-attention block of {} heads per group and head_dim {} fits the {budget} usable on-chip bytes of {}",
            chunk.group(),
            chunk.head_dim,
            soc.name
        ))
    })
}

/// The modelled cost of one FP16 flash-attention execution over a chunk.
#[derive(Clone, Debug, PartialEq)]
pub struct FlashCost {
    /// The block sizes.
    pub blocks: FlashBlocks,
    /// Query blocks per KV head.
    pub q_blocks: usize,
    /// K/V blocks per query block.
    pub kv_blocks: usize,
    /// Whether the phases overlap (≥ 3 KV blocks and ≥ 2 vector units).
    pub pipelined: bool,
    /// Matrix-unit tiles issued.
    pub matrix_tiles: u64,
    /// Matrix-unit busy cycles: `matrix_tiles · fp16.cycles_per_tile`.
    pub matrix_cycles: f64,
    /// Vector-unit busy cycles (layout conversions, softmax, mask, `D`).
    pub vector_cycles: f64,
    /// Bytes moved between DDR and on-chip memory.
    pub dma_bytes: u64,
    /// Fixed per-block cycles (query blocks and KV iterations).
    pub block_fixed_cycles: f64,
    /// Accelerator cycles: the critical path of every block plus `fixed_cycles`.
    pub accelerator_cycles: f64,
    /// Bytes of Q, K, V, the mask and O through host-shared memory.
    pub host_io_bytes: u64,
    /// Nanoseconds of that host I/O.
    pub host_io_ns: f64,
    /// Host↔NPU overhead of a warm launch, ns.
    pub launch_warm_ns: f64,
    /// NPU clock, Hz.
    pub clock_hz: f64,
}

impl FlashCost {
    /// Accelerator time in ns.
    pub fn accelerator_ns(&self) -> f64 {
        self.accelerator_cycles / self.clock_hz * 1e9
    }

    /// Wall time of one warm launch in ns: overhead, host I/O and accelerator time.
    pub fn launch_ns(&self) -> f64 {
        self.launch_warm_ns + self.host_io_ns + self.accelerator_ns()
    }
}

/// Running totals of the flash model.
#[derive(Default)]
struct Totals {
    tiles: u64,
    vector: f64,
    dma: u64,
    fixed: f64,
}

/// The per-unit rates of the flash model.
struct Rates {
    cycles_per_tile: f64,
    tm: usize,
    tn: usize,
    tk: usize,
    /// Vector element-ops per cycle (units · f16 lanes).
    vector_rate: f64,
    softmax_ops: f64,
    elementwise_ops: f64,
    dma_rate: f64,
}

/// Critical-path cycles of one query block of `rows` rows per head (one KV head), adding its
/// work to `t`.
fn query_block_cycles(
    chunk: &AttentionChunk,
    blocks: &FlashBlocks,
    r: &Rates,
    rows: usize,
    pipelined: bool,
    t: &mut Totals,
) -> f64 {
    let d = chunk.head_dim;
    let rows_g = chunk.group() * rows;
    let row_tiles = rows_g.div_ceil(r.tm) as u64;
    let out_tiles = row_tiles * d.div_ceil(r.tn) as u64;
    let vec = |elements: usize, ops: f64| elements as f64 * ops / r.vector_rate;
    let kv_dma = |b: usize| -> u64 {
        let keys = blocks.bc.min(chunk.kv_len - b * blocks.bc);
        let mask = if chunk.causal { rows * keys * F16 } else { 0 };
        (keys * 2 * d * F16 + mask) as u64
    };
    let kv_blocks = chunk.kv_len.div_ceil(blocks.bc);
    // Prologue: load Q (f32), convert it to f16 tiles; the first K/V block arrives unhidden.
    let q_bytes = (rows_g * d * F32) as u64;
    let q_convert = vec(rows_g * d, r.elementwise_ops);
    let mut cycles = Q_BLOCK_FIXED_CYCLES
        + q_bytes as f64 / r.dma_rate
        + q_convert
        + kv_dma(0) as f64 / r.dma_rate;
    t.vector += q_convert;
    t.dma += q_bytes + kv_dma(0);
    t.fixed += Q_BLOCK_FIXED_CYCLES;
    let mut prev_update = 0.0;
    for b in 0..kv_blocks {
        let keys = blocks.bc.min(chunk.kv_len - b * blocks.bc);
        let qk_tiles = row_tiles * keys.div_ceil(r.tn) as u64 * d.div_ceil(r.tk) as u64;
        let update_tiles = out_tiles * (1 + keys.div_ceil(r.tk) as u64);
        let (qk, update) = (
            qk_tiles as f64 * r.cycles_per_tile,
            update_tiles as f64 * r.cycles_per_tile,
        );
        let k_convert = vec(keys * d, r.elementwise_ops);
        let v_convert = vec(keys * d, r.elementwise_ops);
        let mask = if chunk.causal {
            vec(rows_g * keys, r.elementwise_ops)
        } else {
            0.0
        };
        let softmax = vec(rows_g * keys, r.softmax_ops) + mask + vec(rows_g, r.softmax_ops);
        let compute = if pipelined {
            let c = k_convert.max(prev_update) + qk.max(v_convert) + softmax;
            prev_update = update;
            c
        } else {
            k_convert + qk + v_convert + softmax + update
        } + KV_ITER_FIXED_CYCLES;
        let next_dma = if b + 1 < kv_blocks { kv_dma(b + 1) } else { 0 };
        cycles += compute.max(next_dma as f64 / r.dma_rate);
        t.tiles += qk_tiles + update_tiles;
        t.vector += k_convert + v_convert + softmax;
        t.dma += next_dma;
        t.fixed += KV_ITER_FIXED_CYCLES;
    }
    // Epilogue: the last O update (pipelined), O = diag(1/l)·O, store O (f32).
    let o_bytes = (rows_g * d * F32) as u64;
    cycles += prev_update + out_tiles as f64 * r.cycles_per_tile + o_bytes as f64 / r.dma_rate;
    t.tiles += out_tiles;
    t.dma += o_bytes;
    cycles
}

/// FP16 flash attention over `chunk` on `soc`'s matrix and vector units (the module docs give
/// the model), one launch for the whole chunk.
pub fn npu_fp16_flash(soc: &SocProfile, chunk: &AttentionChunk) -> Result<FlashCost> {
    let blocks = flash_blocks(soc, chunk)?;
    let npu = &soc.npu;
    let tile = &npu.matrix.fp16;
    let v = &npu.vector;
    let units = count(&v.units) as usize;
    let r = Rates {
        cycles_per_tile: real(&tile.cycles_per_tile),
        tm: count(&tile.m) as usize,
        tn: count(&tile.n) as usize,
        tk: count(&tile.k) as usize,
        vector_rate: units as f64 * (count(&v.width_bits) / 8) as f64 / F16 as f64,
        softmax_ops: real(&v.softmax_ops),
        elementwise_ops: real(&v.elementwise_ops),
        dma_rate: real(&npu.dma_bytes_per_cycle),
    };
    let q_blocks = chunk.q_len.div_ceil(blocks.br);
    let kv_blocks = chunk.kv_len.div_ceil(blocks.bc);
    let pipelined = kv_blocks >= MIN_PIPELINED_KV_BLOCKS && units >= 2;
    let mut totals = Totals::default();
    let mut path = 0.0;
    for qb in 0..q_blocks {
        let rows = blocks.br.min(chunk.q_len - qb * blocks.br);
        path += query_block_cycles(chunk, &blocks, &r, rows, pipelined, &mut totals);
    }
    // Every KV head repeats the same blocks, one after the other.
    let heads = chunk.kv_heads as u64;
    let fixed = real(&npu.fixed_cycles);
    let (d, q, kv) = (chunk.head_dim, chunk.q_len, chunk.kv_len);
    let mask_bytes = if chunk.causal { q * kv * F16 } else { 0 };
    let host_io_bytes =
        (2 * chunk.q_heads * q * d * F32 + 2 * chunk.kv_heads * kv * d * F16 + mask_bytes) as u64;
    Ok(FlashCost {
        blocks,
        q_blocks,
        kv_blocks,
        pipelined,
        matrix_tiles: totals.tiles * heads,
        matrix_cycles: (totals.tiles * heads) as f64 * r.cycles_per_tile,
        vector_cycles: totals.vector * heads as f64,
        dma_bytes: totals.dma * heads,
        block_fixed_cycles: totals.fixed * heads as f64,
        accelerator_cycles: fixed + path * heads as f64,
        host_io_bytes,
        host_io_ns: npu.launch.io_ns(soc.graph_path(), host_io_bytes),
        launch_warm_ns: npu.launch.warm_ns(soc.graph_path()),
        clock_hz: soc.npu_hz(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use shadowattn_hal::OpKind;

    fn soc() -> SocProfile {
        SocProfile::builtin("snapdragon-8-gen-3").unwrap()
    }

    fn chunk(kv_len: usize) -> AttentionChunk {
        AttentionChunk {
            q_heads: 12,
            kv_heads: 2,
            q_len: 128,
            kv_len,
            head_dim: 128,
            causal: true,
        }
    }

    #[test]
    fn the_int8_graph_has_the_baselines_nodes_and_types() {
        let g = npu_full_int8_graph(2, 768, 2048, 128, true).unwrap();
        let kinds: Vec<OpKind> = g.nodes().iter().map(|n| n.op.kind()).collect();
        assert_eq!(
            kinds,
            [
                OpKind::MatMul,
                OpKind::Dequantize,
                OpKind::Add,
                OpKind::Softmax,
                OpKind::Quantize,
                OpKind::MatMul
            ]
        );
        let out: Vec<&TensorDesc> = g.output_descs().collect();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].dtype, DType::U8);
        assert_eq!(out[0].shape, vec![1, 2, 768, 128]);
        assert_eq!(g.input_descs().count(), 4);
        let plain = npu_full_int8_graph(2, 768, 2048, 128, false).unwrap();
        assert_eq!(plain.nodes().len(), 5);
        // The simulated HTP (its compiler's limits) accepts both.
        let sim = crate::SimBackend::builtin("snapdragon-8-gen-3").unwrap();
        for graph in [&g, &plain] {
            shadowattn_hal::NpuBackend::compile(&sim, graph).unwrap();
        }
    }

    #[test]
    fn costs_grow_with_the_keys() {
        let soc = soc();
        let mut last = (0.0, 0.0);
        for kv in [512, 1024, 2048, 4096] {
            let full = npu_full_int8(&soc, &chunk(kv)).unwrap().launch_ns(false);
            let flash = npu_fp16_flash(&soc, &chunk(kv)).unwrap();
            assert!(full.is_finite() && flash.launch_ns().is_finite());
            assert!(full > last.0 && flash.launch_ns() > last.1, "kv {kv}");
            assert!(flash.accelerator_cycles > flash.matrix_cycles);
            last = (full, flash.launch_ns());
        }
    }

    #[test]
    fn flash_matrix_cycles_are_the_hand_counted_tiles() {
        // 8 Gen 3: FP16 tile 32x32x32, 4 MB usable, 4 vector units.
        // One head (G = 1), q 64, kv 256, d 64, not causal. Blocks: br_unit 32, Br 64 (g_br 64);
        // Bc ≤ kv/3 → 64, so 1 query block and 4 KV blocks of 64 keys.
        let c = AttentionChunk {
            q_heads: 1,
            kv_heads: 1,
            q_len: 64,
            kv_len: 256,
            head_dim: 64,
            causal: false,
        };
        let f = npu_fp16_flash(&soc(), &c).unwrap();
        assert_eq!((f.blocks.br, f.blocks.bc, f.blocks.g_br), (64, 64, 64));
        assert_eq!((f.q_blocks, f.kv_blocks), (1, 4));
        assert!(f.pipelined);
        // Per KV block: S = 2 row tiles x 2 key tiles x 2 depth tiles = 8; O update = 2 x 2
        // output tiles x (1 diagonal + 2 key tiles) = 12. Four blocks: 80; O normalise: 4.
        assert_eq!(f.matrix_tiles, 84);
        let per_tile = real(&soc().npu.matrix.fp16.cycles_per_tile);
        assert_eq!(f.matrix_cycles, 84.0 * per_tile);
        // DMA: Q f32 64x64x4 + K,V f16 256x64x2x2 + O f32 64x64x4.
        assert_eq!(f.dma_bytes, 16384 + 65536 + 16384);
        // Host I/O: Q and O f32, K and V f16, no mask.
        assert_eq!(f.host_io_bytes, 2 * 64 * 64 * 4 + 2 * 256 * 64 * 2);
    }

    #[test]
    fn gqa_groups_share_one_kv_stream() {
        let soc = soc();
        let f = npu_fp16_flash(&soc, &chunk(2048)).unwrap();
        // G = 6: br_unit = ceil(32 / 6) = 6, and each query block spans 6·Br stacked rows.
        assert_eq!(f.blocks.br % 6, 0);
        assert_eq!(f.blocks.g_br, align_up(6 * f.blocks.br, 32));
        assert!(f.blocks.onchip_bytes <= soc.usable_onchip_bytes());
        // K and V bytes are streamed once per KV head and query block, not once per query head.
        let kv_bytes = (2 * 2048 * 128 * 2 * 2 * f.q_blocks) as u64;
        assert!(
            f.dma_bytes >= kv_bytes && f.dma_bytes < 2 * kv_bytes,
            "{f:?}"
        );
    }

    #[test]
    fn bad_shapes_are_errors_not_panics() {
        let soc = soc();
        for c in [
            AttentionChunk {
                kv_heads: 5,
                ..chunk(256)
            },
            AttentionChunk {
                head_dim: 0,
                ..chunk(256)
            },
            AttentionChunk {
                q_len: 512,
                ..chunk(256)
            },
            AttentionChunk {
                head_dim: 1 << 16,
                ..chunk(256)
            },
        ] {
            assert!(npu_fp16_flash(&soc, &c).is_err(), "{c:?}");
        }
        assert!(npu_full_int8(
            &soc,
            &AttentionChunk {
                q_heads: 0,
                ..chunk(256)
            }
        )
        .is_err());
    }
}
