//! Seeded, reproducible tensor data for the cases: graph inputs and constant weights.

use shadowattn_hal::{DType, Graph, HostTensor, TensorDesc};

/// Seeded inputs for a graph: floats in [−2, 2), integers uniform over their type.
pub fn seeded_inputs(graph: &Graph, seed: u64) -> Vec<HostTensor> {
    let mut next = xorshift(seed);
    graph
        .input_descs()
        .map(|d| seeded_fill(d, &mut next))
        .collect()
}

/// One seeded tensor of `desc`, drawn as [`seeded_inputs`] draws an input.
pub fn seeded_tensor(desc: &TensorDesc, seed: u64) -> HostTensor {
    seeded_fill(desc, &mut xorshift(seed))
}

fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    }
}

fn seeded_fill(d: &TensorDesc, next: &mut impl FnMut() -> u64) -> HostTensor {
    let mut t = HostTensor::zeros(d.clone()).expect("graph tensors are valid");
    match d.dtype {
        DType::F32 => {
            for v in t.as_mut_slice::<f32>().expect("f32") {
                *v = (next() >> 40) as f32 / (1u64 << 22) as f32 - 2.0;
            }
        }
        DType::F16 => {
            for v in t.as_mut_slice::<half::f16>().expect("f16") {
                *v = half::f16::from_f32((next() >> 40) as f32 / (1u64 << 22) as f32 - 2.0);
            }
        }
        _ => t
            .bytes_mut()
            .iter_mut()
            .for_each(|b| *b = (next() >> 32) as u8),
    }
    t
}
