//! The C example, compiled by the system C compiler against libshadowattn and run: its output
//! and selection are, bit for bit, what the Rust API gives on the same input.

mod support;

use shadowattn_cpu::CpuBackend;
use shadowattn_hal::AttentionShape;
use shadowattn_simulator::SimBackend;
use shadowattn_sparse_attn::bank::{BankSpec, GraphBank};
use shadowattn_sparse_attn::cost_table::CostTable;
use shadowattn_sparse_attn::pilot::{int8_accumulator_range, PilotOutput, PilotUnit};
use shadowattn_sparse_attn::setup::FUSED_HEADS;
use shadowattn_sparse_attn::shadow::{ShadowAttention, ShadowConfig};
use shadowattn_sparse_attn::synthetic::{SyntheticChunk, SyntheticSpec};
use shadowattn_test_support::{cdylib, missing_dependency, target_dir};
use std::path::Path;
use std::process::Command;

fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn value<'a>(stdout: &'a str, key: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("no `{key}` in:\n{stdout}"))
}

#[test]
fn the_c_example_gives_the_rust_apis_output_and_selection() {
    let (qh, kh, q, k, d) = (4, 2, 16, 64, 32);
    let target = target_dir(env!("CARGO_TARGET_TMPDIR"));
    let lib = cdylib(&target, "shadowattn-capi", "shadowattn").unwrap();
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("c-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("prefill");
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let compiled = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(crate_dir.join("include"))
        .arg(crate_dir.join("examples/prefill.c"))
        .arg("-L")
        .arg(lib.parent().unwrap())
        .args(["-lshadowattn", "-o"])
        .arg(&exe)
        .status();
    match compiled {
        Ok(s) => assert!(s.success(), "the C example does not compile ({s})"),
        Err(e) => return missing_dependency("a C compiler (cc)", &e.to_string()),
    }

    // The calibration file both sides read.
    let calib = support::calibration(qh, kh, d, 0.2, 10);
    let path = dir.join("calibration.json");
    calib.save(&path).unwrap();

    let run = Command::new(&exe)
        .arg(&path)
        .args(["4", "2", "16", "64", "32", "1"])
        .env("LD_LIBRARY_PATH", lib.parent().unwrap())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );

    // The same chunk through the Rust API.
    let shape = AttentionShape::causal(qh, kh, q, k, d);
    let chunk = |seed| {
        SyntheticChunk::generate(SyntheticSpec {
            shape,
            planted_fraction: 0.1,
            signal: 1.0,
            seed,
        })
        .unwrap()
    };
    let acc_range = int8_accumulator_range(chunk(2001).inputs()).unwrap();
    let sim = SimBackend::builtin("snapdragon-8-gen-3").unwrap();
    let spec = BankSpec {
        q_len: q,
        kv_len: k,
        head_dim: d,
        fused: FUSED_HEADS.to_vec(),
        output: PilotOutput::Int8 { acc_range },
        unit: PilotUnit::Head,
    };
    let bank = GraphBank::build(&sim, &calib.grid, spec).unwrap();
    let cpu = CpuBackend::new();
    let mut sa = ShadowAttention::new(
        bank,
        calib,
        &cpu,
        CostTable::uniform(&FUSED_HEADS),
        ShadowConfig::default(),
    )
    .unwrap();
    let c = chunk(1);
    let r = sa.run_chunk(0, c.inputs()).unwrap();
    let basis = 0xcbf2_9ce4_8422_2325;
    let out_bytes: Vec<u8> = r.output.iter().flat_map(|v| v.to_ne_bytes()).collect();
    let mut sel = basis;
    for s in &r.selections {
        for row in 0..q {
            sel = fnv1a(sel, &s.row(row).len().to_ne_bytes());
            let keys: Vec<u8> = s.row(row).iter().flat_map(|k| k.to_ne_bytes()).collect();
            sel = fnv1a(sel, &keys);
        }
    }
    assert_eq!(
        value(&stdout, "output_fnv1a"),
        format!("{:016x}", fnv1a(basis, &out_bytes))
    );
    assert_eq!(value(&stdout, "selection_fnv1a"), format!("{sel:016x}"));
    std::fs::remove_dir_all(&dir).ok();
}
