//! The op set, defined once: each entry of the table below gives an op's documentation (its
//! rule), attributes, inputs, whether the caller gives its output type, its builder method and
//! the function that infers its outputs. [`Op`], [`OpKind`], [`OpKind::ALL`], the arity, the
//! builder methods and the inference dispatch all come from the table, so a new op is one entry
//! and one inference function here, then the backends' `match`es that the compiler lists.

use super::builder::GraphBuilder;
use super::infer;
use super::{OutType, ValueId};
use crate::dtype::DType;
use crate::error::Result;
use crate::tensor::TensorDesc;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The value type of a builder parameter: the attribute's own type, or the borrowed form the
/// table names after `as`.
macro_rules! param_ty {
    ($given:ty ; $attr:ty) => {
        $given
    };
    (; $attr:ty) => {
        $attr
    };
}

/// The output type a builder method passes on: the caller's, when the op takes one.
macro_rules! out_arg {
    () => {
        None
    };
    ($out:ident) => {
        Some($out)
    };
}

/// What a builder method returns for a node's outputs.
pub(crate) trait NodeOutputs: Sized {
    fn from_outputs(outputs: Vec<ValueId>) -> Self;
}

impl NodeOutputs for ValueId {
    fn from_outputs(outputs: Vec<ValueId>) -> Self {
        outputs[0]
    }
}

impl NodeOutputs for (ValueId, ValueId) {
    fn from_outputs(outputs: Vec<ValueId>) -> Self {
        (outputs[0], outputs[1])
    }
}

macro_rules! ops {
    ($(
        $(#[doc = $doc:literal])*
        $name:ident $({ $( $(#[doc = $fdoc:literal])* $field:ident : $fty:ty $(as $pty:ty)? ),* $(,)? })?
        => $builder:ident ( $($input:ident),+ ) $($out:ident)? -> $ret:ty
        $(, outputs ( $($suffix:literal),+ ))?
        , infer $infer:path ;
    )*) => {
        /// The kind of an op, without attributes; capabilities are listed by kind.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum OpKind {
            $(
                #[doc = concat!("See [`Op::", stringify!($name), "`].")]
                $name,
            )*
        }

        impl OpKind {
            /// Every op kind.
            pub const ALL: [OpKind; <[&str]>::len(&[$(stringify!($name)),*])] =
                [$(OpKind::$name),*];

            /// Number of inputs the op takes.
            pub fn arity(self) -> usize {
                match self {
                    $(OpKind::$name => <[&str]>::len(&[$(stringify!($input)),+]),)*
                }
            }

            /// Whether the caller gives the output type (dtype and quantization) of the op.
            pub fn needs_output_type(self) -> bool {
                match self {
                    $(OpKind::$name => <[&str]>::len(&[$(stringify!($out)),*]) == 1,)*
                }
            }

            /// Suffixes of the op's output names after the node's (`:values`); empty when the
            /// op's one output is named like the node.
            pub fn output_suffixes(self) -> &'static [&'static str] {
                match self {
                    $(OpKind::$name => &[$($($suffix),+)?],)*
                }
            }
        }

        /// An operation with its attributes. Each variant's documentation is its rule.
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "op", rename_all = "snake_case")]
        pub enum Op {
            $(
                $(#[doc = $doc])*
                $name $({ $( $(#[doc = $fdoc])* $field: $fty ),* })?,
            )*
        }

        impl Op {
            /// The op's kind.
            pub fn kind(&self) -> OpKind {
                match self {
                    $(Op::$name { .. } => OpKind::$name,)*
                }
            }

            /// Infers the node's output descriptors from its inputs, or says why it is invalid.
            pub(crate) fn infer(
                &self,
                node: &str,
                ins: &[TensorDesc],
                out: Option<&OutType>,
            ) -> Result<Vec<TensorDesc>> {
                match self {
                    $(Op::$name $({ $($field),* })? => $infer(node, ins, out $($(, $field)*)?),)*
                }
            }
        }

        impl GraphBuilder {
            $(
                #[doc = concat!("Adds a node of [`Op::", stringify!($name), "`].")]
                #[allow(clippy::too_many_arguments)]
                pub fn $builder(
                    &mut self,
                    name: &str,
                    $($input: ValueId,)+
                    $($($field: param_ty!($($pty)? ; $fty),)*)?
                    $($out: OutType,)?
                ) -> Result<$ret> {
                    let op = Op::$name $({ $($field: <$fty>::from($field)),* })?;
                    let outputs = self.add_node(name, op, &[$($input),+], out_arg!($($out)?))?;
                    Ok(<$ret as NodeOutputs>::from_outputs(outputs))
                }
            )*
        }
    };
}

ops! {
    /// Batched matrix product: A `[..., M, K]`, B `[..., K, N]` → `[..., M, N]`, batch dims
    /// equal; the transpose flags swap the last two dims of A or B. Float: both f32 or both
    /// f16, output f32 or f16. Quantized: A, B i8/u8 per tensor; output i32 (the exact
    /// accumulator Σ(a−za)(b−zb), scale sa·sb, zero point 0) or an 8/16-bit quantized type
    /// (the accumulator requantized).
    MatMul {
        /// Use A's last two dims swapped.
        transpose_a: bool,
        /// Use B's last two dims swapped.
        transpose_b: bool,
    } => matmul(a, b) out -> ValueId, infer infer::matmul;
    /// Changes the quantization of an integer tensor (also called Convert), same shape:
    /// q' = sat(round((q − z)·s/s') + z').
    Requantize => requantize(x) out -> ValueId, infer infer::requantize;
    /// Float to quantized integer (per tensor or per axis): q = sat(round(x/s) + z).
    Quantize => quantize(x) out -> ValueId, infer infer::quantize;
    /// Quantized integer to float: x = s·(q − z).
    Dequantize {
        /// The float type produced.
        dtype: DType,
    } => dequantize(x) -> ValueId, infer infer::dequantize;
    /// Softmax of a float tensor along one axis: y = exp(β(x − max)) / Σ exp(β(x − max)).
    Softmax {
        /// The axis to normalise.
        axis: usize,
        /// Multiplier applied to the inputs before exponentiation.
        beta: f32,
    } => softmax(x) -> ValueId, infer infer::softmax;
    /// The k largest entries of the last axis of any tensor `[..., L]`, with their indices:
    /// values `[..., k]` and i32 indices `[..., k]`, largest first, equal values lower index
    /// first.
    TopK {
        /// How many entries to keep.
        k: usize,
    } => topk(x) -> (ValueId, ValueId), outputs ("values", "indices"), infer infer::topk;
    /// Elementwise product with NumPy broadcasting. Float: the same float type in and out;
    /// quantized: computed on real values, requantized to the output; i32 without quantization:
    /// saturating.
    Mul => mul(a, b) out -> ValueId, infer infer::mul;
    /// Elementwise sum with NumPy broadcasting, typed as [`Op::Mul`].
    Add => add(a, b) out -> ValueId, infer infer::add;
    /// The same data in a new shape; the element count is unchanged.
    Reshape {
        /// The new shape.
        shape: Vec<usize> as &[usize],
    } => reshape(x) -> ValueId, infer infer::reshape;
    /// A permutation of dimensions: output dim i is input dim `perm[i]`.
    Transpose {
        /// Output dim i is input dim `perm[i]`.
        perm: Vec<usize> as &[usize],
    } => transpose(x) -> ValueId, infer infer::transpose;
    /// Numeric conversion of stored values to another type (quantization ignored); float → int
    /// rounds and saturates.
    Cast {
        /// The type produced.
        dtype: DType,
    } => cast(x) -> ValueId, infer infer::cast;
}

impl Op {
    /// Number of inputs the op takes.
    pub fn arity(&self) -> usize {
        self.kind().arity()
    }

    /// Whether the caller must give the output type (dtype and quantization) when adding this op.
    pub fn needs_output_type(&self) -> bool {
        self.kind().needs_output_type()
    }

    /// Name of the op's `index`-th output in a node called `node`.
    pub fn output_name(&self, node: &str, index: usize) -> String {
        match self.kind().output_suffixes().get(index) {
            Some(suffix) => format!("{node}:{suffix}"),
            None => node.to_string(),
        }
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
