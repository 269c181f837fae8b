//! A plain interpreter of the graph IR: every value is held as exact f64 element values
//! (every supported dtype is exactly representable in f64), and every op applies the rules of
//! [`super::arith`] once, when it stores its result.

use super::arith;
use half::f16;
use shadowattn_hal::{
    check_io, DType, Graph, HalError, HostTensor, Node, Op, QuantParams, Quantization, Result,
    TensorDesc, TensorView, TensorViewMut,
};

/// Runs `graph` on `inputs` and writes every graph output into `outputs`.
pub fn execute(
    graph: &Graph,
    inputs: &[TensorView<'_>],
    outputs: &mut [TensorViewMut<'_>],
) -> Result<()> {
    execute_with(graph, inputs, outputs, &arith::Golden)
}

/// [`execute`] with `rules` for the integer rounding steps instead of the golden ones.
pub fn execute_with(
    graph: &Graph,
    inputs: &[TensorView<'_>],
    outputs: &mut [TensorViewMut<'_>],
    rules: &dyn arith::IntegerRules,
) -> Result<()> {
    check_io(graph, inputs, outputs)?;
    let mut values: Vec<Option<Vec<f64>>> = vec![None; graph.values().len()];
    for (&id, view) in graph.inputs().iter().zip(inputs) {
        values[id.index()] = Some(decode(view.bytes(), view.desc().dtype));
    }
    for c in graph.constants() {
        values[c.value.index()] = Some(decode(&c.bytes, graph.value(c.value).desc.dtype));
    }
    for node in graph.nodes() {
        let ins: Vec<(&TensorDesc, &[f64])> = node
            .inputs
            .iter()
            .map(|&v| {
                let data = values[v.index()]
                    .as_deref()
                    .expect("the builder orders nodes after their inputs");
                (&graph.value(v).desc, data)
            })
            .collect();
        let outs: Vec<&TensorDesc> = node.outputs.iter().map(|&v| &graph.value(v).desc).collect();
        let results = eval(node, &ins, &outs, rules)?;
        for (&id, data) in node.outputs.iter().zip(results) {
            values[id.index()] = Some(data);
        }
    }
    for (&id, out) in graph.outputs().iter().zip(outputs.iter_mut()) {
        let dtype = out.desc().dtype;
        let data = values[id.index()].as_deref().expect("outputs are produced");
        encode(data, dtype, out.bytes_mut());
    }
    Ok(())
}

/// Runs `graph` on `inputs` and returns freshly allocated outputs.
pub fn run(graph: &Graph, inputs: &[TensorView<'_>]) -> Result<Vec<HostTensor>> {
    run_with(graph, inputs, &arith::Golden)
}

/// [`run`] with `rules` for the integer rounding steps.
pub fn run_with(
    graph: &Graph,
    inputs: &[TensorView<'_>],
    rules: &dyn arith::IntegerRules,
) -> Result<Vec<HostTensor>> {
    let mut outputs = graph
        .output_descs()
        .map(|d| HostTensor::zeros(d.clone()))
        .collect::<Result<Vec<_>>>()?;
    {
        let mut views: Vec<TensorViewMut<'_>> = outputs.iter_mut().map(|t| t.view_mut()).collect();
        execute_with(graph, inputs, &mut views, rules)?;
    }
    Ok(outputs)
}

/// Reads host bytes of type `dtype` as exact f64 values.
pub fn decode(bytes: &[u8], dtype: DType) -> Vec<f64> {
    fn each<const N: usize>(b: &[u8], f: impl Fn([u8; N]) -> f64) -> Vec<f64> {
        b.chunks_exact(N)
            .map(|c| f(c.try_into().expect("exact chunks")))
            .collect()
    }
    match dtype {
        DType::F32 => each(bytes, |c| f64::from(f32::from_ne_bytes(c))),
        DType::F16 => each(bytes, |c| f16::from_ne_bytes(c).to_f64()),
        DType::I8 => each(bytes, |c: [u8; 1]| f64::from(c[0] as i8)),
        DType::U8 => each(bytes, |c: [u8; 1]| f64::from(c[0])),
        DType::I16 => each(bytes, |c| f64::from(i16::from_ne_bytes(c))),
        DType::U16 => each(bytes, |c| f64::from(u16::from_ne_bytes(c))),
        DType::I32 => each(bytes, |c| f64::from(i32::from_ne_bytes(c))),
    }
}

/// Writes f64 values, already rounded and saturated for `dtype`, as host bytes.
pub fn encode(data: &[f64], dtype: DType, out: &mut [u8]) {
    let n = dtype.size_bytes();
    for (x, dst) in data.iter().zip(out.chunks_exact_mut(n)) {
        match dtype {
            DType::F32 => dst.copy_from_slice(&(*x as f32).to_ne_bytes()),
            DType::F16 => dst.copy_from_slice(&f16::from_f64(*x).to_ne_bytes()),
            DType::I8 => dst.copy_from_slice(&(*x as i8).to_ne_bytes()),
            DType::U8 => dst.copy_from_slice(&(*x as u8).to_ne_bytes()),
            DType::I16 => dst.copy_from_slice(&(*x as i16).to_ne_bytes()),
            DType::U16 => dst.copy_from_slice(&(*x as u16).to_ne_bytes()),
            DType::I32 => dst.copy_from_slice(&(*x as i32).to_ne_bytes()),
        }
    }
}

fn params(desc: &TensorDesc) -> QuantParams {
    desc.quant
        .per_tensor_params()
        .expect("the builder checked per-tensor quantization")
}

/// Per-element quantization parameters (per tensor or per axis).
fn element_params(desc: &TensorDesc) -> impl Fn(usize) -> QuantParams + '_ {
    move |i| match &desc.quant {
        Quantization::PerTensor(p) => *p,
        Quantization::PerAxis {
            axis,
            scales,
            zero_points,
        } => {
            let inner: usize = desc.shape[axis + 1..].iter().product();
            let c = (i / inner) % desc.shape[*axis];
            QuantParams::new(scales[c], zero_points[c])
        }
        Quantization::None => unreachable!("the builder checked quantization"),
    }
}

fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1];
    }
    s
}

/// For every flat index of `out_shape`, the flat input index `Σ coord[d] · in_strides[d]`.
fn gather_indices(out_shape: &[usize], in_strides: &[usize]) -> Vec<usize> {
    let n: usize = out_shape.iter().product();
    let mut idx = Vec::with_capacity(n);
    let mut coord = vec![0usize; out_shape.len()];
    for _ in 0..n {
        idx.push(coord.iter().zip(in_strides).map(|(c, s)| c * s).sum());
        for d in (0..coord.len()).rev() {
            coord[d] += 1;
            if coord[d] < out_shape[d] {
                break;
            }
            coord[d] = 0;
        }
    }
    idx
}

/// Input strides for reading `in_shape` broadcast to `out_shape` (0 on broadcast dims).
fn broadcast_strides(in_shape: &[usize], out_shape: &[usize]) -> Vec<usize> {
    let s = strides(in_shape);
    let lead = out_shape.len() - in_shape.len();
    (0..out_shape.len())
        .map(|d| {
            if d < lead || in_shape[d - lead] == 1 {
                0
            } else {
                s[d - lead]
            }
        })
        .collect()
}

fn eval(
    node: &Node,
    ins: &[(&TensorDesc, &[f64])],
    outs: &[&TensorDesc],
    rules: &dyn arith::IntegerRules,
) -> Result<Vec<Vec<f64>>> {
    let out = outs[0];
    let name = node.name.as_str();
    let (xd, x) = ins[0];
    let result = match &node.op {
        Op::MatMul {
            transpose_a,
            transpose_b,
        } => matmul(ins[0], ins[1], out, (*transpose_a, *transpose_b), rules),
        Op::Requantize => {
            let (from, to) = (params(xd), params(out));
            x.iter()
                .map(|&q| arith::requantize(q, from, to, out.dtype))
                .collect()
        }
        Op::Quantize => {
            let p = element_params(out);
            x.iter()
                .enumerate()
                .map(|(i, &v)| arith::quantize(v, p(i), out.dtype, name))
                .collect::<Result<_>>()?
        }
        Op::Dequantize { dtype } => {
            let p = element_params(xd);
            x.iter()
                .enumerate()
                .map(|(i, &q)| arith::dequantize(q, p(i), *dtype))
                .collect()
        }
        Op::Softmax { axis, beta } => softmax(xd, x, *axis, f64::from(*beta), out.dtype),
        Op::TopK { k } => return topk_last_axis(name, xd, x, *k),
        Op::Mul | Op::Add => {
            let (yd, y) = ins[1];
            let xi = gather_indices(&out.shape, &broadcast_strides(&xd.shape, &out.shape));
            let yi = gather_indices(&out.shape, &broadcast_strides(&yd.shape, &out.shape));
            let f = |a: f64, b: f64| {
                if matches!(node.op, Op::Mul) {
                    a * b
                } else {
                    a + b
                }
            };
            let pairs = xi.iter().zip(&yi).map(|(&i, &j)| (x[i], y[j]));
            if out.dtype.is_float() {
                pairs
                    .map(|(a, b)| arith::store(f(a, b), out.dtype))
                    .collect()
            } else if out.quant.is_quantized() {
                let (pa, pb, po) = (params(xd), params(yd), params(out));
                let real =
                    |q: f64, p: QuantParams| (q - f64::from(p.zero_point)) * f64::from(p.scale);
                pairs
                    .map(|(a, b)| arith::quantize(f(real(a, pa), real(b, pb)), po, out.dtype, name))
                    .collect::<Result<_>>()?
            } else {
                pairs
                    .map(|(a, b)| arith::saturate(f(a, b), out.dtype))
                    .collect()
            }
        }
        Op::Reshape { .. } => x.to_vec(),
        Op::Transpose { perm } => {
            let s = strides(&xd.shape);
            let in_strides: Vec<usize> = perm.iter().map(|&p| s[p]).collect();
            gather_indices(&out.shape, &in_strides)
                .into_iter()
                .map(|i| x[i])
                .collect()
        }
        Op::Cast { dtype } => x
            .iter()
            .map(|&v| {
                if dtype.is_integer() {
                    rules.cast_to_int(v, *dtype, name)
                } else {
                    arith::cast(v, *dtype, name)
                }
            })
            .collect::<Result<_>>()?,
    };
    Ok(vec![result])
}

fn matmul(
    (ad, a): (&TensorDesc, &[f64]),
    (bd, b): (&TensorDesc, &[f64]),
    out: &TensorDesc,
    (ta, tb): (bool, bool),
    rules: &dyn arith::IntegerRules,
) -> Vec<f64> {
    let r = ad.rank();
    let (m, n) = (out.shape[r - 2], out.shape[r - 1]);
    let k = if ta { ad.shape[r - 2] } else { ad.shape[r - 1] };
    let batches: usize = out.shape[..r - 2].iter().product();
    let quantized = ad.dtype.is_integer();
    let (za, zb) = if quantized {
        (
            f64::from(params(ad).zero_point),
            f64::from(params(bd).zero_point),
        )
    } else {
        (0.0, 0.0)
    };
    let mut result = Vec::with_capacity(batches * m * n);
    for batch in 0..batches {
        let a = &a[batch * m * k..(batch + 1) * m * k];
        let b = &b[batch * k * n..(batch + 1) * k * n];
        // Row by row, every output of the row summing its products in order of p (as
        // `Iterator::sum` would, from -0.0), with B read along its rows.
        let mut acc = vec![0.0f64; n];
        for i in 0..m {
            acc.fill(-0.0);
            for p in 0..k {
                let av = if ta { a[p * m + i] } else { a[i * k + p] } - za;
                for (j, sum) in acc.iter_mut().enumerate() {
                    let bv = if tb { b[j * k + p] } else { b[p * n + j] };
                    *sum += av * (bv - zb);
                }
            }
            result.extend(acc.iter().map(|&v| {
                if quantized {
                    arith::saturate(v, DType::I32)
                } else {
                    arith::store(v, out.dtype)
                }
            }));
        }
    }
    if quantized && out.dtype != DType::I32 {
        let acc: Vec<i32> = result.iter().map(|&v| v as i32).collect();
        let acc_scale = params(ad).scale * params(bd).scale;
        return rules.requantize_accumulators(&acc, acc_scale, params(out), out.dtype);
    }
    result
}

fn softmax(xd: &TensorDesc, x: &[f64], axis: usize, beta: f64, dtype: DType) -> Vec<f64> {
    let len = xd.shape[axis];
    let inner: usize = xd.shape[axis + 1..].iter().product();
    let outer: usize = xd.shape[..axis].iter().product();
    let mut y = vec![0.0; x.len()];
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| o * len * inner + j * inner + i;
            let max = (0..len).map(|j| x[at(j)]).fold(f64::NEG_INFINITY, f64::max);
            let exps: Vec<f64> = (0..len).map(|j| (beta * (x[at(j)] - max)).exp()).collect();
            let sum: f64 = exps.iter().sum();
            for (j, e) in exps.iter().enumerate() {
                y[at(j)] = arith::store(e / sum, dtype);
            }
        }
    }
    y
}

/// Indices of the `k` largest of `row`: larger value first, equal values lower index first.
pub(crate) fn top_indices(row: &[f64], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..row.len()).collect();
    order.sort_by(|&i, &j| row[j].total_cmp(&row[i]).then(i.cmp(&j)));
    order.truncate(k);
    order
}

fn topk_last_axis(node: &str, xd: &TensorDesc, x: &[f64], k: usize) -> Result<Vec<Vec<f64>>> {
    if let Some(i) = x.iter().position(|v| v.is_nan()) {
        return Err(HalError::invalid_value(
            node,
            format!("TopK input holds NaN at element {i}; NaN has no order"),
        ));
    }
    let len = *xd.shape.last().expect("rank >= 1");
    let mut values = Vec::with_capacity(x.len() / len * k);
    let mut indices = Vec::with_capacity(values.capacity());
    for row in x.chunks_exact(len) {
        for i in top_indices(row, k) {
            values.push(row[i]);
            indices.push(i as f64);
        }
    }
    Ok(vec![values, indices])
}
