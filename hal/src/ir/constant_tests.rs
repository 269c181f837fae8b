//! Constant (STATIC) tensors: declared with their data, checked, kept through serialization.

use super::*;
use crate::tensor::HostTensor;

fn weights() -> HostTensor {
    HostTensor::from_slice(
        TensorDesc::new(DType::F32, [1, 1, 3, 2]),
        &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0],
    )
    .unwrap()
}

fn matmul_with_constant() -> Graph {
    let mut b = GraphBuilder::new("static_b");
    let a = b
        .input("a", TensorDesc::new(DType::F32, [1, 1, 4, 3]))
        .unwrap();
    let w = b.constant_tensor("w", &weights()).unwrap();
    let y = b
        .matmul("mm", a, w, false, false, OutType::plain(DType::F32))
        .unwrap();
    b.output(y).unwrap();
    b.build().unwrap()
}

#[test]
fn a_constant_is_not_an_input_and_keeps_its_data() {
    let g = matmul_with_constant();
    assert_eq!(g.inputs().len(), 1);
    assert_eq!(g.constants().len(), 1);
    let w = g.constants()[0].value;
    assert_eq!(g.value(w).name, "w");
    assert_eq!(g.constant(w), Some(weights().bytes()));
    assert_eq!(g.constant(g.inputs()[0]), None);
    g.validate().unwrap();
}

#[test]
fn constant_data_must_fill_its_tensor() {
    let mut b = GraphBuilder::new("g");
    let e = b
        .constant("w", TensorDesc::new(DType::F16, [2, 3]), vec![0; 11])
        .unwrap_err();
    assert!(e.to_string().contains("12 bytes but 11"), "{e}");
    b.constant("w", TensorDesc::new(DType::F16, [2, 3]), vec![0; 12])
        .unwrap();
    assert!(b
        .constant("w", TensorDesc::new(DType::F16, [2, 3]), vec![0; 12])
        .is_err());
}

#[test]
fn constants_survive_serialization_as_hex() {
    let g = matmul_with_constant();
    let json = serde_json::to_string(&g).unwrap();
    assert!(json.contains("\"bytes\":\"0000803f"), "{json}");
    let back: Graph = serde_json::from_str(&json).unwrap();
    assert_eq!(back, g);
    back.validate().unwrap();
    let bad = json.replace("0000803f", "0000803");
    assert!(serde_json::from_str::<Graph>(&bad).is_err());
    let bad = json.replace("0000803f", "zz00803f");
    assert!(serde_json::from_str::<Graph>(&bad).is_err());
    // Graphs written before constants existed still load.
    let old = json
        .split(",\"constants\"")
        .next()
        .map(|s| format!("{s}}}"))
        .unwrap();
    let old: Graph = serde_json::from_str(&old).unwrap();
    assert!(old.constants().is_empty());
}

#[test]
fn a_tampered_constant_fails_validation() {
    let mut g = matmul_with_constant();
    g.constants[0].bytes.pop();
    assert!(g.validate().is_err());
    let mut g = matmul_with_constant();
    g.constants[0].value = ValueId(0);
    assert!(g.validate().is_err());
}
